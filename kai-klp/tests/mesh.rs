//! Five KLP nodes on loopback find each other through libp2p discovery, talk over encrypted sessions
//! at the addresses they found, and one agent calls another's tool under a delegated consent token;
//! nodes whose grants were revoked or have expired are refused. An adversary on the same network
//! gossips and stores forged and stale presence records, and nobody believes them.
#![cfg(feature = "p2p")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, ToolResult, tool_fn};
use kai_klp::calls::{RemoteAgentTool, invoke_capability, serve};
use kai_klp::consent::{issue, issue_at, token_id};
use kai_klp::discovery::{Discovery, DiscoveryConfig, KAD_PROTOCOL, PRESENCE_TOPIC, peer_id, presence_key};
use kai_klp::presence::Presence;
use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{TcpTransport, accept, connect};
use kai_klp::{Capability, Did, Identity, Verifier};
use libp2p::futures::StreamExt as _;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, gossipsub, kad};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

fn copy(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.secret_bytes())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// One node: an agent identity, its discovery node, and a KLP listener whose received direct
/// messages land in `inbox`.
struct Node {
    identity: Identity,
    discovery: Discovery,
    klp: SocketAddr,
    inbox: mpsc::UnboundedReceiver<Envelope>,
}

/// Accepts sessions on `listener`: serves `agent` on each if given, else collects direct messages.
fn listen(
    identity: &Identity,
    listener: TcpListener,
    agent: Option<(Agent, Arc<Verifier>)>,
) -> mpsc::UnboundedReceiver<Envelope> {
    let (inbox, received) = mpsc::unbounded_channel();
    let secret = identity.secret_bytes();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let me = Identity::from_secret_bytes(&secret);
            let agent = agent.clone();
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let Ok(mut session) = accept(copy(&me), TcpTransport::new(stream)).await else {
                    return;
                };
                match agent {
                    Some((agent, verifier)) => {
                        let _ = serve(&agent, &me, &mut session, &verifier).await;
                    }
                    None => {
                        while let Ok(envelope) = session.recv().await {
                            let _ = inbox.send(envelope);
                        }
                    }
                }
            });
        }
    });
    received
}

async fn start_node(identity: Identity, bootstrap: Vec<Multiaddr>, agent: Option<(Agent, Arc<Verifier>)>) -> Node {
    let config = DiscoveryConfig {
        bootstrap,
        query_timeout: Duration::from_secs(10),
        ..DiscoveryConfig::default()
    };
    let discovery = Discovery::start(&identity, config).await.unwrap();
    assert_eq!(discovery.peer_id(), peer_id(&identity.did()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let klp = listener.local_addr().unwrap();
    let inbox = listen(&identity, listener, agent);
    Node {
        identity,
        discovery,
        klp,
        inbox,
    }
}

/// The TCP address in a presence record.
fn tcp_address(presence: &Presence) -> SocketAddr {
    presence.addrs[0].strip_prefix("tcp://").unwrap().parse().unwrap()
}

async fn session_to(from: &Node, to: &Did) -> kai_klp::session::Session<TcpTransport> {
    let presence = from
        .discovery
        .find(to)
        .await
        .unwrap()
        .expect("the peer is discoverable");
    let stream = TcpStream::connect(tcp_address(&presence)).await.unwrap();
    connect(copy(&from.identity), Some(to), TcpTransport::new(stream))
        .await
        .unwrap()
}

/// `caller` asks Bob's agent about the weather through a `RemoteAgentTool` holding `grant`; returns
/// what the caller's model got back from the tool.
async fn ask_bob(caller: &Node, bob: &Did, grant: String) -> ToolResult {
    let session = session_to(caller, bob).await;
    let capabilities = vec![invoke_capability(bob), Capability::call_tool("weather")];
    let tool = RemoteAgentTool::new(
        session,
        copy(&caller.identity),
        grant,
        capabilities,
        "ask_bob",
        "Asks Bob.",
    );
    let model = ScriptedModel::new()
        .tool_call("ask_bob", json!({"input": "What is the weather in Oslo?"}))
        .text("Done.");
    let agent = Agent::builder(model).tool(tool).build().unwrap();
    let output = agent.run("Ask Bob about Oslo.").await.unwrap();
    output
        .messages
        .iter()
        .flat_map(|m| m.tool_results().cloned())
        .next()
        .unwrap()
}

fn result_text(result: &ToolResult) -> String {
    result.content.clone()
}

/// A presence record naming one agent but signed by another's key (`Presence::sign` refuses this).
fn forge(signer: &Identity, claims: &Presence) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = b64(&signer.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// An adversary speaking the same protocols without any of the checks.
#[derive(NetworkBehaviour)]
struct Adversary {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
}

/// Joins through `bootstrap`, then gossips and stores `tokens` as Bob's presence record.
async fn inject(bootstrap: Multiaddr, victim: Did, tokens: Vec<String>) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let local = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                local,
                kad::store::MemoryStore::new(local),
                kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
            );
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default().build().unwrap();
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config).unwrap();
            Adversary { kad, gossipsub }
        })
        .unwrap()
        .build();
    let topic = gossipsub::IdentTopic::new(PRESENCE_TOPIC);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = bootstrap.iter().last() else {
        panic!("no peer id in {bootstrap}");
    };
    swarm.behaviour_mut().kad.add_address(&peer, bootstrap.clone());
    swarm.dial(bootstrap).unwrap();

    let mut pending = tokens.len();
    let mut sent = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pending > 0 {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("the adversary's puts finish");
        match event {
            SwarmEvent::Behaviour(AdversaryEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) if !sent => {
                sent = true;
                for token in &tokens {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), token.as_bytes())
                        .unwrap();
                    let record = kad::Record::new(presence_key(&victim), token.clone().into_bytes());
                    swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One).unwrap();
                }
            }
            SwarmEvent::Behaviour(AdversaryEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::PutRecord(_),
                ..
            })) => pending -= 1,
            _ => {}
        }
    }
    // Give the gossip time to reach everyone before leaving.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct City {
    #[allow(dead_code)]
    city: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_discover_each_other_talk_privately_and_call_under_delegated_consent() {
    let [ann, bob, carol, dave, eve] = std::array::from_fn(|_| Identity::generate());
    let bob_did = bob.did();

    // Bob serves a weather agent to callers whose chain starts at him.
    let weather_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&weather_calls);
    let bob_agent = Agent::builder(
        ScriptedModel::new()
            .tool_call("weather", json!({"city": "Oslo"}))
            .text("Sunny in Oslo."),
    )
    .tool(tool_fn("weather", "Today's weather in a city.", move |_: City| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok("sunny") }
    }))
    .build()
    .unwrap();
    let verifier = Arc::new(Verifier::new(bob_did, [bob_did]));

    let ann = start_node(ann, Vec::new(), None).await;
    let bootstrap = ann.discovery.listen_addrs().to_vec();
    let bob = start_node(bob, bootstrap.clone(), Some((bob_agent, Arc::clone(&verifier)))).await;
    let carol = start_node(carol, bootstrap.clone(), None).await;
    let dave = start_node(dave, bootstrap.clone(), None).await;
    let eve = start_node(eve, bootstrap.clone(), None).await;
    let mut nodes = [ann, bob, carol, dave, eve];

    // Before Bob says anything, an adversary claims to be Bob (signed with its own key) and replays a
    // record of Bob's that has expired: neither is believed.
    let mallory = Identity::generate();
    let mut forged = Presence::new(&mallory, ["tcp://127.0.0.1:9"], [], Duration::from_secs(600));
    forged.did = bob_did;
    let forged = forge(&mallory, &forged);
    let stale = Presence {
        iat: now() - 600,
        exp: now() - 300,
        ..Presence::new(&nodes[1].identity, ["tcp://127.0.0.1:9"], [], Duration::from_secs(1))
    }
    .sign(&nodes[1].identity)
    .unwrap();
    inject(bootstrap[0].clone(), bob_did, vec![forged, stale]).await;
    for node in &nodes {
        assert!(node.discovery.known().iter().all(|p| p.did != bob_did));
        assert_eq!(node.discovery.find(&bob_did).await.unwrap(), None);
    }

    // Everyone announces where it accepts sessions.
    for node in &nodes {
        let caps = if node.identity.did() == bob_did {
            vec![invoke_capability(&bob_did), Capability::call_tool("weather")]
        } else {
            Vec::new()
        };
        let presence = Presence::new(
            &node.identity,
            [format!("tcp://{}", node.klp)],
            caps,
            Duration::from_secs(600),
        );
        node.discovery.publish(&node.identity, &presence).await.unwrap();
    }

    // Each finds every other through the DHT...
    let dids: Vec<Did> = nodes.iter().map(|n| n.identity.did()).collect();
    for node in &nodes {
        for (other, did) in nodes.iter().zip(&dids) {
            let found = node.discovery.find(did).await.unwrap().expect("every node is found");
            assert_eq!(tcp_address(&found), other.klp);
        }
    }
    // ...and hears every other's record over gossip.
    let deadline = tokio::time::Instant::now() + WAIT;
    for node in &nodes {
        while node.discovery.known().len() < nodes.len() {
            assert!(tokio::time::Instant::now() < deadline, "gossip did not converge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let offered = nodes[0].discovery.find(&bob_did).await.unwrap().unwrap().caps;
    assert!(offered.contains(&Capability::call_tool("weather")));

    // Encrypted messages around a ring of the nodes that collect direct messages (all but Bob).
    let ring = [0, 2, 3, 4];
    for (i, &from) in ring.iter().enumerate() {
        let to = ring[(i + 1) % ring.len()];
        let mut session = session_to(&nodes[from], &dids[to]).await;
        let message = Envelope::new(
            &nodes[from].identity,
            &dids[to],
            MessageKind::Direct,
            json!({"hello": from}),
        );
        session.send(&message).await.unwrap();
    }
    for (i, &to) in ring.iter().enumerate() {
        let from = ring[(i + ring.len() - 1) % ring.len()];
        let received = tokio::time::timeout(WAIT, nodes[to].inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((received.from, received.body), (dids[from], json!({"hello": from})));
    }

    // Bob grants Carol the weather agent for an hour; Carol delegates it to Dave for ten minutes.
    let granted = [invoke_capability(&bob_did), Capability::call_tool("weather")];
    let [_, bob, carol, dave, eve] = &nodes;
    let to_carol = issue(&bob.identity, &dids[2], &granted, Duration::from_secs(3600), &[]).unwrap();
    let to_dave = issue(
        &carol.identity,
        &dids[3],
        &granted,
        Duration::from_secs(600),
        &[to_carol],
    )
    .unwrap();
    let answer = ask_bob(dave, &bob_did, to_dave).await;
    assert!(!answer.is_error, "{}", result_text(&answer));
    assert!(result_text(&answer).contains("Sunny in Oslo."));
    assert_eq!(weather_calls.load(Ordering::SeqCst), 1);

    // Eve's grant was revoked; Ann's expired an hour ago.
    let to_eve = issue(&bob.identity, &dids[4], &granted, Duration::from_secs(3600), &[]).unwrap();
    verifier.revoke(token_id(&to_eve));
    let refused = ask_bob(eve, &bob_did, to_eve).await;
    assert!(
        refused.is_error && result_text(&refused).contains("revoked"),
        "{}",
        result_text(&refused)
    );
    let to_ann = issue_at(
        &bob.identity,
        &dids[0],
        &granted,
        now() - 7200,
        Duration::from_secs(3600),
        &[],
    )
    .unwrap();
    let refused = ask_bob(&nodes[0], &bob_did, to_ann).await;
    assert!(
        refused.is_error && result_text(&refused).contains("expired"),
        "{}",
        result_text(&refused)
    );
    assert_eq!(weather_calls.load(Ordering::SeqCst), 1);
    nodes.iter_mut().for_each(|node| node.inbox.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_outlives_its_publisher_in_the_dht_and_an_older_one_is_refused() {
    let first = start_node(Identity::generate(), Vec::new(), None).await;
    let bootstrap = first.discovery.listen_addrs().to_vec();
    let second = start_node(Identity::generate(), bootstrap.clone(), None).await;
    let publisher = start_node(Identity::generate(), bootstrap.clone(), None).await;
    let did = publisher.identity.did();

    let older = Presence::new(&publisher.identity, ["tcp://127.0.0.1:1"], [], Duration::from_secs(600));
    let mut newer = older.clone();
    newer.seq += 1;
    newer.addrs = vec![format!("tcp://{}", publisher.klp)];
    publisher.discovery.publish(&publisher.identity, &newer).await.unwrap();
    let refused = publisher.discovery.publish(&publisher.identity, &older).await;
    assert!(
        matches!(refused, Err(kai_klp::Error::PresenceInvalid { .. })),
        "{refused:?}"
    );

    // Give the other nodes' gossip and DHT stores a moment, then take the publisher away.
    let deadline = tokio::time::Instant::now() + WAIT;
    while [&first, &second]
        .iter()
        .any(|n| n.discovery.known().iter().all(|p| p.did != did))
    {
        assert!(tokio::time::Instant::now() < deadline, "gossip did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(publisher);

    // A node that joins afterwards heard no gossip: it finds the record in the others' DHT stores.
    let late = start_node(Identity::generate(), bootstrap, None).await;
    assert!(late.discovery.known().is_empty());
    let found = late
        .discovery
        .find(&did)
        .await
        .unwrap()
        .expect("the DHT still holds the record");
    assert_eq!(found, newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_renews_its_record_before_it_expires() {
    let first = start_node(Identity::generate(), Vec::new(), None).await;
    let bootstrap = first.discovery.listen_addrs().to_vec();
    let agent = start_node(Identity::generate(), bootstrap, None).await;
    let published = Presence::new(
        &agent.identity,
        [format!("tcp://{}", agent.klp)],
        [],
        Duration::from_secs(3),
    );
    agent.discovery.publish(&agent.identity, &published).await.unwrap();

    // Well past the first record's expiry, the other node still finds a current one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let found = first
        .discovery
        .find(&agent.identity.did())
        .await
        .unwrap()
        .expect("a renewed record");
    assert!(found.seq > published.seq && found.exp > now(), "{found:?}");
    assert_eq!((found.addrs, found.exp - found.iat), (published.addrs, 3));
}
