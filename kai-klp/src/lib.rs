//! # kai-klp
//!
//! The Kind Link Protocol lets kAI agents on different machines prove who they are, prove they were
//! allowed, and talk privately, as a composition of standards. This release holds:
//!
//! - identities: one Ed25519 key pair per agent, named by its
//!   [`did:key`](https://w3c-ccg.github.io/did-method-key/) DID, with the DID document that method
//!   derives (including the X25519 key-agreement key);
//! - [`consent`]: capability tokens (UCAN-style claims in an EdDSA compact JWS, RFC 8037) that can be
//!   delegated and only ever narrowed, their verification, and a hook that checks them before tool calls;
//! - [`sealed`]: signed envelopes sealed to a recipient's DID with HPKE (RFC 9180), with replay and
//!   freshness checks;
//! - [`session`]: live Noise XX sessions bound to both agents' DIDs, over any frame transport;
//! - [`calls`]: serving an agent to remote agents with consent tokens, and a remote agent as a local tool;
//! - [`presence`]: signed records of where an agent accepts sessions and what it offers, and a
//!   directory that keeps the newest valid one per agent; [`discovery`] (feature `p2p`) publishes and
//!   finds them over libp2p (Kademlia, gossipsub, identify);
//! - [`audit`]: a signed, hash-chained, append-only log of an agent's actions, with a hook that writes it.
//!
//! Features: `tcp` and `websocket` (session transports), `p2p` (discovery over libp2p), and `vault`
//! (keep identities in a kai-memory `Vault`; without it kai-klp does not build kai-memory, SQLite or
//! rayon).
//!
//! ```
//! use kai_klp::{Did, Identity};
//!
//! let alice = Identity::generate();
//! let did: Did = alice.did();
//! let signature = alice.sign(b"hello");
//! did.verify(b"hello", &signature)?;
//! assert_eq!(did.to_string().parse::<Did>()?, did);
//! # Ok::<(), kai_klp::Error>(())
//! ```

#[cfg(all(feature = "a2a", not(target_arch = "wasm32")))]
pub mod a2a;
pub mod audit;
pub mod calls;
mod clock;
pub mod consent;
mod did;
#[cfg(all(feature = "p2p", not(target_arch = "wasm32")))]
pub mod discovery;
mod error;
mod identity;
mod jws;
pub mod presence;
mod replay;
pub mod sealed;
pub mod session;

pub use consent::{Capability, Claims, ConsentHook, Verifier};
pub use did::Did;
pub use error::Error;
pub use identity::Identity;
