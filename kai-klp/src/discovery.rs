//! Finding agents over libp2p (feature `p2p`, native targets): signed [presence records](crate::presence)
//! stored in a Kademlia DHT under `/klp/presence/<did>` and spread live over gossipsub, with identify
//! feeding peers' listen addresses into the routing table.
//!
//! Each node's libp2p identity is its agent's Ed25519 key, so its peer id is derived from its DID.
//! Every record that arrives (a DHT store request, a DHT answer, a gossip message) is checked before it
//! is stored, kept or passed on: forged, stale, future-dated or older records are dropped, and invalid
//! gossip is reported to gossipsub as rejected so that it is not forwarded and its sender is penalised.
//!
//! A [`Discovery`] runs its swarm on a tokio task; [`Discovery::start`] must be called inside a tokio
//! runtime. Dropping the handle stops the node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use libp2p::futures::StreamExt as _;
use libp2p::kad::{self, QueryId, QueryResult, Quorum, Record, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{now_millis, now_seconds};
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::presence::{Directory, Presence};

/// The Kademlia protocol KLP nodes speak (a DHT of their own, apart from the public IPFS one).
pub const KAD_PROTOCOL: &str = "/klp/kad/1.0.0";
/// The identify protocol version KLP nodes announce.
pub const IDENTIFY_PROTOCOL: &str = "/klp/1.0.0";
/// The gossipsub topic presence records are spread on.
pub const PRESENCE_TOPIC: &str = "/klp/presence/1";

/// The DHT key of `did`'s presence record: the bytes of `/klp/presence/<did>`.
pub fn presence_key(did: &Did) -> RecordKey {
    RecordKey::new(&format!("/klp/presence/{did}"))
}

/// The libp2p peer id of the node run by `did`'s agent.
pub fn peer_id(did: &Did) -> Result<PeerId, Error> {
    libp2p::identity::ed25519::PublicKey::try_from_bytes(did.public_key().as_bytes())
        .map(|key| libp2p::identity::PublicKey::from(key).to_peer_id())
        .map_err(|e| Error::InvalidKey(e.to_string()))
}

/// How a node listens and whom it asks first.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Addresses to listen on; `/ip4/127.0.0.1/tcp/0` by default (an OS-chosen port on loopback).
    pub listen: Vec<Multiaddr>,
    /// Known nodes to join through, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// How long a DHT query may run.
    pub query_timeout: Duration,
    /// For how many agents the node keeps records it has heard (see [`Directory`]).
    pub directory_capacity: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4([127, 0, 0, 1].into()))
                    .with(Protocol::Tcp(0)),
            ],
            bootstrap: Vec::new(),
            query_timeout: Duration::from_secs(30),
            directory_capacity: crate::presence::DEFAULT_DIRECTORY_CAPACITY,
        }
    }
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

/// Where the answer to a `find` goes.
type FindReply = oneshot::Sender<Result<Option<Presence>, Error>>;

enum Command {
    Announce {
        token: String,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Find {
        did: Did,
        reply: FindReply,
    },
}

/// A running discovery node.
#[derive(Debug)]
pub struct Discovery {
    peer_id: PeerId,
    addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    directory: Arc<Mutex<Directory>>,
}

fn failed(reason: impl Into<String>) -> Error {
    Error::Discovery { reason: reason.into() }
}

fn build_swarm(identity: &Identity, config: &DiscoveryConfig) -> Result<Swarm<Behaviour>, Error> {
    let mut secret = identity.secret_bytes();
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret[..])
        .map_err(|e| failed(format!("the identity's key is not usable by libp2p: {e}")))?;
    let local = keypair.public().to_peer_id();

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config
        .set_query_timeout(config.query_timeout)
        .set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad = kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
    // Serve the DHT even without a confirmed public address (loopback and private networks).
    kad.set_mode(Some(kad::Mode::Server));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .build()
        .map_err(|e| failed(format!("gossipsub configuration: {e}")))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(keypair.clone()), gossip_config)
            .map_err(|e| failed(format!("gossipsub: {e}")))?;
    let topic = gossipsub::IdentTopic::new(PRESENCE_TOPIC);
    gossipsub
        .with_peer_score(score_params(&topic), gossipsub::PeerScoreThresholds::default())
        .map_err(|e| failed(format!("gossipsub scoring: {e}")))?;
    gossipsub
        .subscribe(&topic)
        .map_err(|e| failed(format!("subscribing to presence gossip: {e}")))?;
    let identify = identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), keypair.public()));

    let behaviour = Behaviour {
        kad,
        gossipsub,
        identify,
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| failed(format!("TCP transport: {e}")))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| failed(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}

/// Gossipsub v1.1 scoring that counts rejected (forged, stale, malformed) records against the peer
/// that sent them. Presence gossip is rare, so peers are not penalised for delivering few messages, and
/// agents sharing an IP address (one host, one NAT) are not penalised for it: signatures, not
/// addresses, are the defence here.
fn score_params(topic: &gossipsub::IdentTopic) -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    };
    // Time in the mesh earns little credit (at most 5 points), and rejected records are remembered
    // for a while (the counter keeps 90% a second): a dozen or so rejections graylist a peer.
    let presence = gossipsub::TopicScoreParams {
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        invalid_message_deliveries_decay: 0.9,
        ..gossipsub::TopicScoreParams::default()
    };
    params.topics.insert(topic.hash(), presence);
    params
}

impl Discovery {
    /// Starts a node for `identity`: listens, dials the bootstrap nodes and joins the DHT. Returns once
    /// every listener has an address.
    pub async fn start(identity: &Identity, config: DiscoveryConfig) -> Result<Self, Error> {
        let mut swarm = build_swarm(identity, &config)?;
        let peer_id = *swarm.local_peer_id();
        let mut waiting = HashSet::new();
        for addr in &config.listen {
            let listener = swarm
                .listen_on(addr.clone())
                .map_err(|e| failed(format!("cannot listen on {addr}: {e}")))?;
            waiting.insert(listener);
        }
        let mut addrs = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        waiting.remove(&listener_id);
                        addrs.push(address.with(Protocol::P2p(peer_id)));
                    }
                    SwarmEvent::ListenerError { error, .. } => return Err(failed(format!("listener failed: {error}"))),
                    _ => {}
                },
                () = &mut deadline => return Err(failed("no listen address within 10 s")),
            }
        }
        for addr in &config.bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(failed(format!(
                    "bootstrap address {addr} does not end in /p2p/<peer id>"
                )));
            };
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            swarm
                .dial(addr.clone())
                .map_err(|e| failed(format!("cannot dial {addr}: {e}")))?;
        }
        if !config.bootstrap.is_empty() {
            // Only fails when no peer is known, and one was just added.
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }

        let directory = Arc::new(Mutex::new(Directory::with_capacity(config.directory_capacity)));
        let (commands, receiver) = mpsc::channel(64);
        let node = Node {
            swarm,
            me: identity.did(),
            identity: Identity::from_secret_bytes(&identity.secret_bytes()),
            directory: Arc::clone(&directory),
            own: None,
            refresh_at: None,
            greeted: HashSet::new(),
            puts: HashMap::new(),
            finds: HashMap::new(),
            gossip_budget: GossipBudget::default(),
        };
        tokio::spawn(node.run(receiver));
        Ok(Self {
            peer_id,
            addrs,
            commands,
            directory,
        })
    }

    /// This node's libp2p peer id (derived from its agent's DID).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this node listens on, each ending in `/p2p/<peer id>`: what other nodes bootstrap
    /// from.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// Publishes a signed presence record: stores it in the DHT (returning once at least one other node
    /// holds it) and gossips it. While the node runs, it re-signs its own agent's latest record with a
    /// fresh validity of the same length halfway through the current one, so the agent stays findable;
    /// records relayed for other agents are not refreshed. The record may describe another agent (a node can relay records for
    /// agents that cannot run libp2p, such as ones in a browser); it is checked first either way, and
    /// refused if a newer record for the same agent is already known.
    pub async fn announce(&self, token: &str) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Announce {
            token: token.to_owned(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Signs `presence` with `identity` and [announces](Discovery::announce) it.
    pub async fn publish(&self, identity: &Identity, presence: &Presence) -> Result<(), Error> {
        self.announce(&presence.sign(identity)?).await
    }

    /// The newest valid record for `did`, asking the DHT and merging what gossip brought; `None` if no
    /// node holds a valid one.
    pub async fn find(&self, did: &Did) -> Result<Option<Presence>, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Find { did: *did, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Marks `did` as known (a peer this node deals with): its record is kept over strangers' when the
    /// directory is full. See [`Directory::mark_known`].
    pub fn mark_known(&self, did: Did) {
        self.directory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_known(did);
    }

    /// Every valid, unexpired record this node has seen (gossip, DHT answers and store requests).
    pub fn known(&self) -> Vec<Presence> {
        self.directory.lock().unwrap_or_else(PoisonError::into_inner).current()
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    failed("the discovery node has stopped")
}

/// The swarm and what the node is waiting for.
struct Node {
    swarm: Swarm<Behaviour>,
    me: Did,
    /// The agent's key, to re-sign its record before it expires.
    identity: Identity,
    directory: Arc<Mutex<Directory>>,
    /// This node's own latest record, gossiped again when a peer first subscribes.
    own: Option<String>,
    /// When to re-sign and republish `own`: halfway through its validity.
    refresh_at: Option<tokio::time::Instant>,
    /// Peers that have subscribed to presence gossip on a live connection (greeted once each).
    greeted: HashSet<PeerId>,
    puts: HashMap<QueryId, oneshot::Sender<Result<(), Error>>>,
    finds: HashMap<QueryId, (Did, FindReply)>,
    /// Gossiped records accepted per peer in the current minute.
    gossip_budget: GossipBudget,
}

/// How many gossiped records one peer may have accepted per minute; more are ignored (not forwarded),
/// so one peer cannot churn the directory or make this node relay a flood.
const GOSSIP_RECORDS_PER_MINUTE: u32 = 120;

/// Counts records accepted per propagating peer in the current minute.
#[derive(Default)]
struct GossipBudget {
    minute: u64,
    counts: HashMap<PeerId, u32>,
}

impl GossipBudget {
    /// Whether `peer` may have one more record accepted in the minute of `now` (seconds).
    fn allow(&mut self, peer: PeerId, now: u64) -> bool {
        let minute = now / 60;
        if minute != self.minute {
            self.minute = minute;
            self.counts.clear();
        }
        let count = self.counts.entry(peer).or_insert(0);
        if *count >= GOSSIP_RECORDS_PER_MINUTE {
            return false;
        }
        *count += 1;
        true
    }
}

impl Node {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let refresh_at = self.refresh_at;
            let refresh = async move {
                match refresh_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.event(event),
                () = refresh => self.refresh(),
            }
        }
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Announce { token, reply } => {
                let now = now_seconds();
                let record = match Presence::verify_at(&token, now) {
                    Ok(record) => record,
                    Err(error) => {
                        let _ = reply.send(Err(error));
                        return;
                    }
                };
                {
                    let mut directory = self.directory();
                    if directory
                        .newest_seq(&record.did, now)
                        .is_some_and(|seq| seq > record.seq)
                    {
                        let _ = reply.send(Err(Error::PresenceInvalid {
                            reason: "a newer record for this agent is already known".into(),
                        }));
                        return;
                    }
                    directory.keep(record.clone(), &token, now);
                }
                match self.spread(&record, token) {
                    Ok(query) => {
                        self.puts.insert(query, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            Command::Find { did, reply } => {
                let query = self.swarm.behaviour_mut().kad.get_record(presence_key(&did));
                self.finds.insert(query, (did, reply));
            }
        }
    }

    /// Gossips a checked record and stores it in the DHT; the store query's id. An own record is
    /// remembered, to greet new peers with and to refresh.
    fn spread(&mut self, record: &Presence, token: String) -> Result<QueryId, Error> {
        if record.did == self.me {
            self.own = Some(token.clone());
            let remaining = remaining(record);
            self.refresh_at = Some(tokio::time::Instant::now() + remaining / 2);
        }
        self.gossip(&token);
        let mut entry = Record::new(presence_key(&record.did), token.into_bytes());
        entry.expires = Some(std::time::Instant::now() + remaining(record));
        self.swarm
            .behaviour_mut()
            .kad
            .put_record(entry, Quorum::One)
            .map_err(|error| failed(format!("cannot store the record: {error}")))
    }

    /// Re-signs the agent's own record with a fresh validity of the same length and publishes it.
    fn refresh(&mut self) {
        self.refresh_at = None;
        let Some(Ok(old)) = self.own.as_deref().map(Presence::authentic) else {
            return;
        };
        let now = now_seconds();
        let renewed = Presence {
            seq: now_millis().max(old.seq.saturating_add(1)),
            iat: now,
            exp: now + (old.exp - old.iat),
            ..old
        };
        let token = match renewed.sign(&self.identity) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, "could not re-sign the presence record");
                return;
            }
        };
        self.directory().keep(renewed.clone(), &token, now);
        if let Err(error) = self.spread(&renewed, token) {
            tracing::debug!(%error, "refreshed presence record not stored");
        }
    }

    fn gossip(&mut self, token: &str) {
        let topic = gossipsub::IdentTopic::new(PRESENCE_TOPIC);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, token.as_bytes()) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(error) => tracing::debug!(%error, "presence gossip not sent"),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.gossip_event(event),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.greeted.remove(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) =>
            {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            _ => {}
        }
    }

    fn kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.store_inbound(record, source),
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => match result {
                QueryResult::PutRecord(result) => {
                    if let Some(reply) = self.puts.remove(&id) {
                        let _ = reply.send(
                            result
                                .map(|_| ())
                                .map_err(|e| failed(format!("no node stored the record: {e}"))),
                        );
                    }
                }
                QueryResult::GetRecord(result) => {
                    if let Ok(kad::GetRecordOk::FoundRecord(found)) = &result {
                        self.take_found(&found.record);
                    }
                    if (step.last || result.is_err())
                        && let Some((did, reply)) = self.finds.remove(&id)
                    {
                        let found = self.directory().get(&did).cloned();
                        let _ = reply.send(Ok(found));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// A record under the right key that verifies now, with its text.
    fn check(record: &Record, now: u64) -> Option<(Presence, String)> {
        let token = std::str::from_utf8(&record.value).ok()?;
        let presence = Presence::verify_at(token, now).ok()?;
        (record.key == presence_key(&presence.did)).then(|| (presence, token.to_owned()))
    }

    /// A record from a DHT answer: kept in the directory if valid and newer.
    fn take_found(&self, record: &Record) {
        let now = now_seconds();
        if let Some((presence, token)) = Self::check(record, now) {
            self.directory().keep(presence, &token, now);
        }
    }

    /// A store request from another node: stored only if valid and newer than the record this node's
    /// DHT store holds under that key (whatever gossip has already brought to the directory).
    fn store_inbound(&mut self, mut record: Record, source: PeerId) {
        let now = now_seconds();
        let Some((presence, token)) = Self::check(&record, now) else {
            tracing::debug!("refused a forged, stale or malformed presence record");
            return;
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        let held = kad::store::RecordStore::get(kad.store_mut(), &record.key)
            .and_then(|held| Self::check(&held, now).map(|(held, _)| held.seq));
        if held.is_some_and(|seq| seq >= presence.seq) {
            return;
        }
        record.expires = Some(std::time::Instant::now() + remaining(&presence));
        if let Err(error) = kad::store::RecordStore::put(kad.store_mut(), record) {
            tracing::debug!(%error, "presence record not stored");
        }
        self.directory()
            .keep_from(presence, &token, Some(&source.to_string()), now);
    }

    fn gossip_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // Forged or malformed: rejected (not forwarded, and it counts against the sender).
                // Expired or ahead of our clock: ignored, since an honest peer may have relayed it
                // late or have a skewed clock. Valid but not newer: ignored.
                let now = now_seconds();
                let acceptance = match std::str::from_utf8(&message.data).map(|t| (t, Presence::authentic(t))) {
                    Ok((token, Ok(record))) => {
                        let source = propagation_source.to_string();
                        if record.check_time(now).is_ok()
                            && self.gossip_budget.allow(propagation_source, now)
                            && self.directory().keep_from(record, token, Some(&source), now)
                        {
                            gossipsub::MessageAcceptance::Accept
                        } else {
                            gossipsub::MessageAcceptance::Ignore
                        }
                    }
                    _ => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
            }
            // gossipsub reports every SUBSCRIBE, repeats included: greet each peer once per connection.
            gossipsub::Event::Subscribed { peer_id, topic }
                if topic == gossipsub::IdentTopic::new(PRESENCE_TOPIC).hash() && self.greeted.insert(peer_id) =>
            {
                if let Some(own) = self.own.clone()
                    && Presence::verify(&own).is_ok()
                {
                    self.gossip(&own);
                }
            }
            _ => {}
        }
    }
}

/// How long `presence` stays valid from now.
fn remaining(presence: &Presence) -> Duration {
    Duration::from_secs(presence.exp.saturating_sub(now_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer relaying a flood has at most its per-minute share accepted; others are unaffected, and the
    /// share comes back the next minute.
    #[test]
    fn gossip_acceptance_is_rate_limited_per_peer() {
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let mut budget = GossipBudget::default();
        let accepted = (0..1000).filter(|_| budget.allow(flooder, 600)).count();
        assert_eq!(accepted, GOSSIP_RECORDS_PER_MINUTE as usize);
        assert!(budget.allow(honest, 600));
        assert!(budget.allow(flooder, 660));
    }
}
