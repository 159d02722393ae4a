//! Live sessions between agents: Noise XX (X25519, ChaCha20-Poly1305, SHA-256) over any frame
//! transport, bound to both agents' DIDs.
//!
//! Each side's Noise static key is the X25519 key its DID derives, and each side signs the handshake
//! hash with its Ed25519 key, so a session is forward-secret, mutually authenticated and bound to the
//! two DIDs. Frames carry signed envelopes; Noise's counters reject altered, replayed or reordered
//! frames, after which the session is unusable.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use kai_core::MaybeSend;
use serde::{Deserialize, Serialize};

use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::jws;
use crate::sealed::Envelope;

#[cfg(all(feature = "tcp", not(target_arch = "wasm32")))]
mod tcp;
#[cfg(all(feature = "websocket", not(target_arch = "wasm32")))]
mod websocket;
#[cfg(all(feature = "websocket", target_arch = "wasm32"))]
mod websocket_web;

#[cfg(all(feature = "tcp", not(target_arch = "wasm32")))]
pub use tcp::TcpTransport;
#[cfg(all(feature = "websocket", not(target_arch = "wasm32")))]
pub use websocket::WebSocketTransport;
#[cfg(all(feature = "websocket", target_arch = "wasm32"))]
pub use websocket_web::WebSocketTransport;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// The Noise prologue: both sides mix it into the handshake, so a handshake only completes between
/// peers speaking this protocol and version.
pub const PROLOGUE: &[u8] = b"kai-klp/v1 session";
/// The context each side's signature over the handshake hash is made in (followed by the side's role,
/// a zero byte, and the hash): a signature made for a KLP handshake proves nothing anywhere else, and
/// one side's proof cannot stand in for the other's.
const PROOF_CONTEXT: &[u8] = b"kai-klp/v1 handshake proof by the ";
/// The largest frame on the wire (a Noise message).
pub const MAX_FRAME_BYTES: usize = 65_535;
/// The largest signed envelope a session accepts unless told otherwise
/// ([`Session::with_max_message_bytes`]).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
const TAG_BYTES: usize = 16;
/// The bytes of an envelope one frame carries, after its flag byte.
const CHUNK_BYTES: usize = MAX_FRAME_BYTES - TAG_BYTES - 1;
/// The flag byte that starts a frame's plaintext: more frames of this envelope follow...
const MORE: u8 = 1;
/// ...or this frame ends it.
const LAST: u8 = 0;

/// Moves whole frames between two peers.
#[kai_core::async_trait]
pub trait FrameTransport: MaybeSend {
    /// Sends one frame.
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error>;
    /// Receives one frame; [`Error::SessionClosed`] when the other side is gone. Should be cancel-safe
    /// (dropping the future before it completes loses nothing), so that sessions can wait with a
    /// timeout.
    async fn recv(&mut self) -> Result<Vec<u8>, Error>;
}

/// Frames through memory, for tests and for agents in one process.
#[derive(Debug)]
pub struct MemoryTransport {
    outgoing: mpsc::Sender<Vec<u8>>,
    incoming: mpsc::Receiver<Vec<u8>>,
}

/// Two connected in-memory transports.
pub fn memory_pair() -> (MemoryTransport, MemoryTransport) {
    let (a_tx, a_rx) = mpsc::channel(64);
    let (b_tx, b_rx) = mpsc::channel(64);
    (
        MemoryTransport {
            outgoing: a_tx,
            incoming: b_rx,
        },
        MemoryTransport {
            outgoing: b_tx,
            incoming: a_rx,
        },
    )
}

#[kai_core::async_trait]
impl FrameTransport for MemoryTransport {
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        fits(frame)?;
        self.outgoing
            .send(frame.to_vec())
            .await
            .map_err(|_| Error::SessionClosed)
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        let frame = self.incoming.next().await.ok_or(Error::SessionClosed)?;
        if frame.len() > MAX_FRAME_BYTES {
            return Err(broken("an oversized frame arrived"));
        }
        Ok(frame)
    }
}

/// Refuses a frame too large for the wire before it is sent.
pub(crate) fn fits(frame: &[u8]) -> Result<(), Error> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(broken(format!(
            "a frame of {} bytes exceeds {MAX_FRAME_BYTES}",
            frame.len()
        )));
    }
    Ok(())
}

pub(crate) fn broken(reason: impl Into<String>) -> Error {
    Error::SessionBroken { reason: reason.into() }
}

fn handshake(reason: impl Into<String>) -> Error {
    Error::Handshake { reason: reason.into() }
}

/// What each side puts in its authenticated handshake payload.
#[derive(Serialize, Deserialize)]
struct Proof {
    did: Did,
    /// base64url Ed25519 signature over the handshake hash before this message.
    sig: String,
}

/// An established session.
pub struct Session<T: FrameTransport> {
    transport: T,
    noise: snow::TransportState,
    me: Identity,
    peer: Did,
    max_message_bytes: usize,
    /// Set while a send or receive is under way: if it fails or its future is dropped half-way, the
    /// Noise nonces or the transport's framing may be out of step, so the session must not be used.
    busy: bool,
}

impl<T: FrameTransport> std::fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.me.did())
            .field("peer", &self.peer)
            .finish()
    }
}

fn builder_state(identity: &Identity, initiator: bool) -> Result<snow::HandshakeState, Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS
        .parse()
        .map_err(|_| handshake("unknown Noise parameters"))?;
    let secret = identity.x25519_secret();
    let builder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .local_private_key(secret.as_ref());
    let state = if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    };
    state.map_err(|e| handshake(e.to_string()))
}

fn write(state: &mut snow::HandshakeState, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buffer = vec![0u8; MAX_FRAME_BYTES];
    let length = state
        .write_message(payload, &mut buffer)
        .map_err(|e| handshake(e.to_string()))?;
    buffer.truncate(length);
    Ok(buffer)
}

fn read(state: &mut snow::HandshakeState, message: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buffer = vec![0u8; MAX_FRAME_BYTES];
    let length = state
        .read_message(message, &mut buffer)
        .map_err(|e| handshake(e.to_string()))?;
    buffer.truncate(length);
    Ok(buffer)
}

/// A side of the handshake, named in what its proof signs.
#[derive(Debug, Clone, Copy)]
enum Role {
    Initiator,
    Responder,
}

/// What `role` signs to prove it holds its DID's key in the handshake whose hash is `hash`.
fn proof_input(role: Role, hash: &[u8]) -> Vec<u8> {
    let role: &[u8] = match role {
        Role::Initiator => b"initiator",
        Role::Responder => b"responder",
    };
    [PROOF_CONTEXT, role, &[0], hash].concat()
}

/// This side's proof for the handshake hash as it stands.
fn prove(identity: &Identity, role: Role, state: &snow::HandshakeState) -> Result<Vec<u8>, Error> {
    let proof = Proof {
        did: identity.did(),
        sig: URL_SAFE_NO_PAD.encode(identity.sign(&proof_input(role, state.get_handshake_hash()))),
    };
    serde_json::to_vec(&proof).map_err(|e| handshake(e.to_string()))
}

/// Checks the proof of the peer (in `role`) against the hash both sides had before its message, and
/// that its Noise static key is the one its DID derives.
fn check(state: &snow::HandshakeState, role: Role, hash_before: &[u8], payload: &[u8]) -> Result<Did, Error> {
    let proof: Proof = serde_json::from_slice(payload).map_err(|_| handshake("the peer's proof is malformed"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(&proof.sig)
        .map_err(|_| handshake("the peer's signature is malformed"))?;
    proof
        .did
        .verify(&proof_input(role, hash_before), &signature)
        .map_err(|_| handshake("the peer's signature over the handshake does not verify for its DID"))?;
    let remote = state
        .get_remote_static()
        .ok_or_else(|| handshake("the peer sent no static key"))?;
    if remote != proof.did.x25519_public_key().as_slice() {
        return Err(handshake("the peer's Noise key is not the one its DID derives"));
    }
    Ok(proof.did)
}

/// How long [`connect`] and [`accept`] wait for the peer to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a handshake, failing with [`Error::Handshake`] if it takes longer than `limit`, so that a peer
/// that connects and goes silent cannot hold a task for ever.
async fn within<T>(limit: Duration, handshake_run: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    crate::clock::within(limit, handshake_run).await.unwrap_or_else(|| {
        Err(handshake(format!(
            "the peer did not complete the handshake within {} ms",
            limit.as_millis()
        )))
    })
}

/// Opens a session to a peer, as the initiator, within [`HANDSHAKE_TIMEOUT`]. With `expected`, only
/// that DID is accepted.
pub async fn connect<T: FrameTransport>(
    identity: Identity,
    expected: Option<&Did>,
    transport: T,
) -> Result<Session<T>, Error> {
    connect_within(HANDSHAKE_TIMEOUT, identity, expected, transport).await
}

/// [`connect`] with another time limit for the handshake.
pub async fn connect_within<T: FrameTransport>(
    limit: Duration,
    identity: Identity,
    expected: Option<&Did>,
    transport: T,
) -> Result<Session<T>, Error> {
    within(limit, initiate(identity, expected, transport)).await
}

/// Accepts a session from a peer, as the responder, within [`HANDSHAKE_TIMEOUT`].
pub async fn accept<T: FrameTransport>(identity: Identity, transport: T) -> Result<Session<T>, Error> {
    accept_within(HANDSHAKE_TIMEOUT, identity, transport).await
}

/// [`accept`] with another time limit for the handshake.
pub async fn accept_within<T: FrameTransport>(
    limit: Duration,
    identity: Identity,
    transport: T,
) -> Result<Session<T>, Error> {
    within(limit, respond(identity, transport)).await
}

async fn initiate<T: FrameTransport>(
    identity: Identity,
    expected: Option<&Did>,
    mut transport: T,
) -> Result<Session<T>, Error> {
    let mut state = builder_state(&identity, true)?;
    let first = write(&mut state, &[])?;
    transport.send(&first).await?;
    let hash_before = state.get_handshake_hash().to_vec();
    let second = transport.recv().await?;
    let payload = read(&mut state, &second)?;
    let peer = check(&state, Role::Responder, &hash_before, &payload)?;
    if expected.is_some_and(|e| *e != peer) {
        return Err(handshake(format!("connected to {peer}, not the expected peer")));
    }
    let proof = prove(&identity, Role::Initiator, &state)?;
    let third = write(&mut state, &proof)?;
    transport.send(&third).await?;
    Session::established(transport, state, identity, peer)
}

async fn respond<T: FrameTransport>(identity: Identity, mut transport: T) -> Result<Session<T>, Error> {
    let mut state = builder_state(&identity, false)?;
    let first = transport.recv().await?;
    if !read(&mut state, &first)?.is_empty() {
        return Err(handshake("the first handshake message must carry no payload"));
    }
    let proof = prove(&identity, Role::Responder, &state)?;
    let second = write(&mut state, &proof)?;
    transport.send(&second).await?;
    let hash_before = state.get_handshake_hash().to_vec();
    let third = transport.recv().await?;
    let payload = read(&mut state, &third)?;
    let peer = check(&state, Role::Initiator, &hash_before, &payload)?;
    Session::established(transport, state, identity, peer)
}

impl<T: FrameTransport> Session<T> {
    /// The session after a completed handshake.
    fn established(transport: T, state: snow::HandshakeState, me: Identity, peer: Did) -> Result<Self, Error> {
        let noise = state.into_transport_mode().map_err(|e| handshake(e.to_string()))?;
        Ok(Session {
            transport,
            noise,
            me,
            peer,
            max_message_bytes: MAX_MESSAGE_BYTES,
            busy: false,
        })
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &Did {
        &self.peer
    }

    /// Accepts envelopes of up to `max` bytes (signed form) from the peer; larger ones break the session.
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// Signs and sends an envelope (which must be from this side to the peer), in as many frames as
    /// it needs. If this fails, or its future is dropped before it finishes, the session is broken:
    /// every later send or receive is [`Error::SessionBroken`].
    pub async fn send(&mut self, envelope: &Envelope) -> Result<(), Error> {
        if envelope.from != self.me.did() || envelope.to != self.peer {
            return Err(broken("an envelope on a session goes from this side to the peer"));
        }
        let signed = jws::sign(&self.me, jws::Kind::Envelope, envelope)?;
        self.check_usable()?;
        self.busy = true;
        let mut chunks = signed.as_bytes().chunks(CHUNK_BYTES).peekable();
        let mut plaintext = Vec::with_capacity(CHUNK_BYTES + 1);
        while let Some(chunk) = chunks.next() {
            plaintext.clear();
            plaintext.push(if chunks.peek().is_some() { MORE } else { LAST });
            plaintext.extend_from_slice(chunk);
            self.send_frame(&plaintext).await?;
        }
        self.busy = false;
        Ok(())
    }

    /// Encrypts one frame's plaintext and sends it.
    async fn send_frame(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        let mut frame = vec![0u8; MAX_FRAME_BYTES];
        let length = self
            .noise
            .write_message(plaintext, &mut frame)
            .map_err(|e| broken(e.to_string()))?;
        self.transport.send(&frame[..length]).await
    }

    /// Sends `plaintext` as one frame as it stands, flag byte and all: for tests and fuzzing of the
    /// receiving side, which must survive whatever an authenticated peer sends.
    #[cfg(any(test, fuzzing))]
    #[doc(hidden)]
    pub async fn send_raw_frame(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        self.send_frame(plaintext).await
    }

    /// Refuses if an earlier send or receive did not finish.
    fn check_usable(&self) -> Result<(), Error> {
        if self.busy {
            return Err(broken("an earlier send or receive failed or was cancelled half-way"));
        }
        Ok(())
    }

    /// Receives the next envelope, checking it was signed by the peer and addressed here. Waiting for
    /// it may be cancelled (a `select!` with a timeout, say) as long as the transport's `recv` is
    /// cancel-safe, as all of this crate's are; once its first frame has arrived, a failure or a
    /// cancelled receive breaks the session, as with [`Session::send`].
    pub async fn recv(&mut self) -> Result<Envelope, Error> {
        self.check_usable()?;
        let mut signed = Vec::new();
        let mut plaintext = vec![0u8; MAX_FRAME_BYTES];
        loop {
            let frame = self.transport.recv().await?;
            // From the first frame on, the envelope must be read to its end.
            self.busy = true;
            let length = self
                .noise
                .read_message(&frame, &mut plaintext)
                .map_err(|_| broken("a frame failed authentication (altered, replayed or out of order)"))?;
            let (flag, chunk) = match plaintext[..length].split_first() {
                Some((&flag, chunk)) if flag == LAST || (flag == MORE && chunk.len() == CHUNK_BYTES) => (flag, chunk),
                _ => return Err(broken("a frame is not a well-formed piece of an envelope")),
            };
            if signed.len() + chunk.len() > self.max_message_bytes {
                return Err(broken(format!(
                    "the peer sent an envelope over {} bytes",
                    self.max_message_bytes
                )));
            }
            signed.extend_from_slice(chunk);
            if flag == LAST {
                break;
            }
        }
        let text = std::str::from_utf8(&signed).map_err(|_| broken("an envelope is not a token"))?;
        // The peer's key is known: the signature is checked before the body is parsed.
        let envelope: Envelope =
            jws::decode_within(text, self.max_message_bytes, jws::Kind::Envelope)?.verify(&self.peer)?;
        if envelope.from != self.peer || envelope.to != self.me.did() {
            return Err(broken("an envelope on this session names other parties"));
        }
        self.busy = false;
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// What the server makes of one frame whose plaintext the client wrote by hand.
    fn receive_plaintext(plaintext: &[u8]) -> Result<Envelope, Error> {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let (a, b) = memory_pair();
        block_on(async {
            let (client, server) = futures::join!(connect(alice, None, a), accept(bob, b));
            let (mut client, mut server) = (client?, server?);
            client.send_raw_frame(plaintext).await?;
            server.recv().await
        })
    }

    /// A hostile initiator: its Noise static key from `noise_key`, its proof whatever `proof` makes of
    /// the handshake state. Returns what the honest responder made of it.
    fn accept_from(noise_key: &Identity, proof: impl Fn(&snow::HandshakeState) -> Vec<u8>) -> Error {
        let (mut theirs, ours) = memory_pair();
        block_on(async {
            let hostile = async {
                let mut state = builder_state(noise_key, true)?;
                theirs.send(&write(&mut state, &[])?).await?;
                let second = theirs.recv().await?;
                read(&mut state, &second)?;
                let payload = proof(&state);
                let third = write(&mut state, &payload)?;
                theirs.send(&third).await?;
                Ok::<_, Error>(theirs)
            };
            let (sent, accepted) = futures::join!(hostile, accept(Identity::generate(), ours));
            let _keep_open = sent.unwrap();
            accepted.unwrap_err()
        })
    }

    fn proof_json(did: Did, signature: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&Proof {
            did,
            sig: URL_SAFE_NO_PAD.encode(signature),
        })
        .unwrap()
    }

    /// Mallory runs the handshake with her own Noise key and presents Alice's DID with Alice's valid
    /// signature over it (say, relayed from a session Alice is running): the Noise key is not the one
    /// Alice's DID derives, so the session is refused.
    #[test]
    fn a_did_whose_key_is_not_the_noise_key_is_refused() {
        let (alice, mallory) = (Identity::generate(), Identity::generate());
        let error = accept_from(&mallory, |state| {
            let input = proof_input(Role::Initiator, state.get_handshake_hash());
            proof_json(alice.did(), &alice.sign(&input))
        });
        assert!(error.to_string().contains("not the one its DID derives"), "{error}");
    }

    #[test]
    fn a_signature_over_another_handshake_is_refused() {
        let alice = Identity::generate();
        let error = accept_from(&alice, |_| proof_json(alice.did(), &alice.sign(&[0u8; 32])));
        assert!(error.to_string().contains("does not verify"), "{error}");
        let error = accept_from(&alice, |_| b"{\"did\": 1}".to_vec());
        assert!(error.to_string().contains("malformed"), "{error}");
    }

    /// Domain separation: the initiator's proof must be made for a KLP handshake, in its own role. A
    /// signature over the bare hash (which another protocol might ask Alice to sign) or the responder's
    /// form of the proof does not complete the handshake.
    #[test]
    fn a_proof_made_without_the_context_or_in_the_other_role_is_refused() {
        let alice = Identity::generate();
        let bare = accept_from(&alice, |state| {
            proof_json(alice.did(), &alice.sign(state.get_handshake_hash()))
        });
        assert!(bare.to_string().contains("does not verify"), "{bare}");
        let other_role = accept_from(&alice, |state| {
            let input = proof_input(Role::Responder, state.get_handshake_hash());
            proof_json(alice.did(), &alice.sign(&input))
        });
        assert!(other_role.to_string().contains("does not verify"), "{other_role}");
    }

    /// A peer whose Noise handshake has another prologue (another protocol, or another version of this
    /// one) cannot read our side's handshake message, so no handshake completes.
    #[test]
    fn a_handshake_with_another_prologue_fails() {
        let (ours, mut theirs) = memory_pair();
        let (read_by_stranger, accepted) = block_on(async {
            let stranger = async {
                let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
                let key = Identity::generate().x25519_secret();
                let mut state = snow::Builder::new(params)
                    .prologue(b"kai-klp/v0 session")
                    .local_private_key(key.as_ref())
                    .build_initiator()
                    .unwrap();
                theirs.send(&write(&mut state, &[]).unwrap()).await.unwrap();
                let second = theirs.recv().await.unwrap();
                let read_result = read(&mut state, &second);
                drop(theirs);
                read_result
            };
            futures::join!(stranger, accept(Identity::generate(), ours))
        });
        assert!(
            matches!(read_by_stranger, Err(Error::Handshake { .. })),
            "{read_by_stranger:?}"
        );
        assert!(accepted.is_err());
    }

    #[test]
    fn frames_that_are_not_well_formed_pieces_break_the_session() {
        // No flag, an unknown flag, and a short piece that claims more follows.
        for plaintext in [&b""[..], &[7, b'x'][..], &[MORE, b'x'][..]] {
            let error = receive_plaintext(plaintext).unwrap_err();
            assert!(
                matches!(&error, Error::SessionBroken { .. }),
                "{plaintext:?}: {error:?}"
            );
        }
        // A whole envelope that is not a signed token.
        let error = receive_plaintext(&[LAST, b'x']).unwrap_err();
        assert!(matches!(&error, Error::TokenMalformed { .. }), "{error:?}");
    }
}
