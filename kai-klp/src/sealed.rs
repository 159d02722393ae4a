//! Messages between agents: signed envelopes, sealed to the recipient's DID with HPKE (RFC 9180).
//!
//! The sender signs the envelope (a compact EdDSA JWS of its fields), then seals the JWS with HPKE in
//! base mode — DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 — to the X25519 key the
//! recipient's `did:key` derives. Only the recipient can open it, and the signature inside proves who
//! wrote it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{next_sequence, now_seconds};
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;
use crate::jws;

/// The HPKE `info` string binding sealed messages to this protocol and version.
const INFO: &[u8] = b"kai-klp/v1 sealed message";
/// The largest sealed message accepted: 1 MiB.
pub const MAX_SEALED_BYTES: usize = 1024 * 1024;

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A message for the recipient agent.
    Direct,
    /// "Are you there?"
    StatusPing,
    /// A request to run the recipient agent (see the calls section of docs/klp.md).
    CallRequest,
    /// The answer to a call request.
    CallResponse,
    /// An announcement of addresses and capabilities.
    Presence,
}

/// A message's signed contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// A random id; the recipient refuses an id it has seen.
    pub id: String,
    /// The sender.
    pub from: Did,
    /// The recipient.
    pub to: Did,
    /// When it was written (seconds since the Unix epoch).
    pub created: u64,
    /// Orders the sender's envelopes: milliseconds since the Unix epoch when written, raised above
    /// the last one its process wrote, so each is larger than the one before.
    pub seq: u64,
    /// What it is for.
    pub kind: MessageKind,
    /// The payload.
    pub body: serde_json::Value,
}

impl Envelope {
    /// A new envelope from `from` to `to`, written now, with a random id.
    pub fn new(from: &Identity, to: &Did, kind: MessageKind, body: serde_json::Value) -> Self {
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        Self {
            id: URL_SAFE_NO_PAD.encode(id),
            from: from.did(),
            to: *to,
            created: now_seconds(),
            seq: next_sequence(),
            kind,
            body,
        }
    }
}

/// A sealed message as it travels: `{"v": 1, "enc": …, "ct": …}` (base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Format version.
    pub v: u8,
    /// The HPKE encapsulated key.
    pub enc: String,
    /// The HPKE ciphertext of the signed envelope.
    pub ct: String,
}

/// The longest base64 ciphertext a sealed message may carry: a signed envelope of
/// [`MAX_SEALED_BYTES`], encrypted and encoded.
const MAX_CIPHERTEXT_CHARS: usize = MAX_SEALED_BYTES * 4 / 3 + 4;

impl Sealed {
    /// A sealed message from its JSON text, refusing text longer than any sealed message can be before
    /// parsing it.
    ///
    /// ```
    /// use kai_klp::sealed::Sealed;
    ///
    /// assert!(Sealed::from_json(r#"{"v": 1, "enc": "", "ct": ""}"#).is_ok());
    /// assert!(Sealed::from_json(&"x".repeat(2_000_000)).is_err());
    /// ```
    pub fn from_json(text: &str) -> Result<Self, Error> {
        // The ciphertext, the encapsulated key (at most 64 characters) and the JSON around them.
        if text.len() > MAX_CIPHERTEXT_CHARS + 1024 {
            return Err(malformed("larger than a sealed message can be"));
        }
        serde_json::from_str(text).map_err(|error| malformed(format!("not a sealed message: {error}")))
    }
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::MessageRejected { reason: reason.into() }
}

/// A cryptographic RNG for HPKE, seeded from the operating system.
fn rng() -> rand_chacha::ChaCha20Rng {
    use rand_chacha::rand_core::SeedableRng as _;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    rand_chacha::ChaCha20Rng::from_seed(seed)
}

/// Signs `envelope` as `sender` and seals it to `envelope.to`.
pub fn seal(sender: &Identity, envelope: &Envelope) -> Result<Sealed, Error> {
    if envelope.from != sender.did() {
        return Err(malformed("the envelope's sender is not the signing identity"));
    }
    let signed = jws::sign(sender, jws::Kind::Envelope, envelope)?;
    // What cannot be opened is not sent: the recipient refuses a signed envelope over the same bound.
    if signed.len() > MAX_SEALED_BYTES {
        return Err(malformed(format!(
            "the signed envelope is {} bytes, over the {MAX_SEALED_BYTES} a sealed message may hold",
            signed.len()
        )));
    }
    let recipient = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&envelope.to.x25519_public_key())
        .map_err(|_| Error::InvalidKey("the recipient has no usable X25519 key".into()))?;
    let aad = envelope.to.to_string();
    let (encapsulated, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &recipient,
        INFO,
        signed.as_bytes(),
        aad.as_bytes(),
        &mut rng(),
    )
    .map_err(|e| malformed(format!("sealing failed: {e}")))?;
    Ok(Sealed {
        v: 1,
        enc: URL_SAFE_NO_PAD.encode(encapsulated.to_bytes()),
        ct: URL_SAFE_NO_PAD.encode(ciphertext),
    })
}

/// Opens messages sealed to one identity, refusing replays, stale and future-dated messages, and
/// telling which arrive out of their sender's order.
pub struct Mailbox {
    identity: Identity,
    max_age: Duration,
    seen: Seen,
    /// Per sender, the highest `seq` opened and when that message was written.
    latest: HashMap<Did, (u64, u64)>,
    capacity: usize,
}

/// The messages opened inside the replay window, by a digest of sender and id (so one sender's ids
/// never collide with another's), bounded in all, per sender, and for senders not known: unknown
/// senders hold at most half of the capacity together and a hundredth each, a known sender a tenth.
#[derive(Debug, Default)]
struct Seen {
    /// When each message was written, by whom, and whether the sender was known then, by digest.
    entries: HashMap<[u8; 32], (u64, Did, bool)>,
    /// The same entries by time written, so those leaving the window go first, in logarithmic time.
    by_time: BTreeSet<(u64, [u8; 32])>,
    /// Entries per sender.
    per_sender: HashMap<Did, usize>,
    /// Entries of senders not known.
    unknown: usize,
    /// Senders whose messages may use the half of the capacity unknown senders cannot.
    known: HashSet<Did>,
}

impl Seen {
    /// Records message `id` from `from`, written at `created`, refusing a replay, and, when full, a
    /// message rather than forgetting one still inside the window (which would let it be replayed).
    fn remember(&mut self, from: &Did, id: &str, created: u64, horizon: u64, capacity: usize) -> Result<(), Error> {
        while let Some(&(written, key)) = self.by_time.first()
            && written < horizon
        {
            self.by_time.pop_first();
            if let Some((_, sender, known)) = self.entries.remove(&key) {
                if !known {
                    self.unknown -= 1;
                }
                if let Some(count) = self.per_sender.get_mut(&sender) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_sender.remove(&sender);
                    }
                }
            }
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(from.public_key().as_bytes())
            .chain_update(id.as_bytes())
            .finalize()
            .into();
        if self.entries.contains_key(&key) {
            return Err(Error::Replayed);
        }
        if self.entries.len() >= capacity {
            return Err(malformed("too many messages inside the replay window"));
        }
        let known = self.known.contains(from);
        if !known && self.unknown >= (capacity / 2).max(1) {
            return Err(malformed(
                "too many messages from unknown senders inside the replay window",
            ));
        }
        let share = if known { capacity / 10 } else { capacity / 100 };
        let count = self.per_sender.entry(*from).or_insert(0);
        if *count >= share.max(1) {
            return Err(malformed("too many messages from this sender inside the replay window"));
        }
        *count += 1;
        if !known {
            self.unknown += 1;
        }
        self.by_time.insert((created, key));
        self.entries.insert(key, (created, *from, known));
        Ok(())
    }
}

/// Where an opened message falls in its sender's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// After every message opened from this sender within the window.
    InOrder,
    /// Written before a message from this sender that was already opened: it arrived out of order
    /// (offline delivery does not keep order; a live session does).
    Late {
        /// The highest `seq` already opened from this sender.
        latest: u64,
    },
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("did", &self.identity.did())
            .field("seen", &self.seen.entries.len())
            .finish()
    }
}

impl Mailbox {
    /// A mailbox for `identity` accepting messages up to 5 minutes old (and 1 minute from the future).
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            max_age: Duration::from_secs(300),
            seen: Seen::default(),
            latest: HashMap::new(),
            capacity: 100_000,
        }
    }

    /// Sets how many messages the mailbox remembers inside its window (100,000 by default). Unknown
    /// senders together may hold half of them, each a hundredth; a known sender ([`know`](Self::know))
    /// a tenth. So a flood from throwaway identities cannot shut known senders out, nor one known
    /// sender the others.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Counts `sender` as known: its messages may use the half of the replay cache that unknown senders
    /// cannot, up to a tenth of it.
    pub fn know(&mut self, sender: Did) {
        self.seen.known.insert(sender);
    }

    /// Sets how old a message may be.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Opens a sealed message: decrypts it, checks the sender's signature and that it is addressed
    /// here, and refuses one whose id was seen or whose time is outside the window. Messages are
    /// accepted in any order; [`open_ordered`](Self::open_ordered) also tells which came late.
    pub fn open(&mut self, sealed: &Sealed) -> Result<Envelope, Error> {
        self.open_at(sealed, now_seconds())
    }

    /// [`open`](Self::open) at an explicit time.
    pub fn open_at(&mut self, sealed: &Sealed, now: u64) -> Result<Envelope, Error> {
        self.open_ordered_at(sealed, now).map(|(envelope, _)| envelope)
    }

    /// [`open`](Self::open), also telling whether the message is in its sender's order.
    pub fn open_ordered(&mut self, sealed: &Sealed) -> Result<(Envelope, Order), Error> {
        self.open_ordered_at(sealed, now_seconds())
    }

    /// [`open_ordered`](Self::open_ordered) at an explicit time.
    pub fn open_ordered_at(&mut self, sealed: &Sealed, now: u64) -> Result<(Envelope, Order), Error> {
        if sealed.v != 1 {
            return Err(malformed(format!("unsupported sealed-message version {}", sealed.v)));
        }
        if sealed.ct.len() > MAX_CIPHERTEXT_CHARS || sealed.enc.len() > 64 {
            return Err(malformed("the sealed message is too large"));
        }
        let encapsulated = URL_SAFE_NO_PAD
            .decode(&sealed.enc)
            .map_err(|_| malformed("enc is not base64url"))?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(&sealed.ct)
            .map_err(|_| malformed("ct is not base64url"))?;
        let encapsulated = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&encapsulated)
            .map_err(|_| malformed("enc is not an X25519 key"))?;
        let secret = self.identity.x25519_secret();
        let private = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret.as_ref())
            .map_err(|_| Error::InvalidKey("no usable X25519 secret".into()))?;
        let aad = self.identity.did().to_string();
        let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &private,
            &encapsulated,
            INFO,
            &ciphertext,
            aad.as_bytes(),
        )
        .map_err(|_| malformed("the message does not open with this identity's key (not for us, or altered)"))?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| malformed("the contents are not a token"))?;
        let unverified = jws::decode_within(text, MAX_SEALED_BYTES, jws::Kind::Envelope)?;
        let sender: Sender = unverified.claimed_signer()?;
        let envelope: Envelope = unverified.verify(&sender.from)?;
        if envelope.from != sender.from {
            return Err(malformed("the envelope names two senders"));
        }
        if envelope.to != self.identity.did() {
            return Err(malformed("the signed envelope is addressed to someone else"));
        }
        if envelope.created.saturating_add(self.max_age.as_secs()) < now {
            return Err(malformed("the message is older than the accepted window"));
        }
        if envelope.created > now.saturating_add(60) {
            return Err(malformed("the message is dated in the future"));
        }
        let horizon = now.saturating_sub(self.max_age.as_secs());
        self.seen
            .remember(&envelope.from, &envelope.id, envelope.created, horizon, self.capacity)?;
        let order = self.place(&envelope, now);
        Ok((envelope, order))
    }

    /// Records the message in its sender's sequence and says where it falls.
    fn place(&mut self, envelope: &Envelope, now: u64) -> Order {
        if let Some(&(latest, _)) = self.latest.get(&envelope.from)
            && envelope.seq <= latest
        {
            return Order::Late { latest };
        }
        if !self.latest.contains_key(&envelope.from) && self.latest.len() >= self.capacity {
            let horizon = now.saturating_sub(self.max_age.as_secs());
            self.latest.retain(|_, (_, created)| *created >= horizon);
        }
        if self.latest.contains_key(&envelope.from) || self.latest.len() < self.capacity {
            self.latest.insert(envelope.from, (envelope.seq, envelope.created));
        }
        Order::InOrder
    }
}

/// The claim that names an envelope's signer, read before the signature is checked.
#[derive(Deserialize)]
struct Sender {
    from: Did,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::Kem as _;

    /// A message signed by Mallory but claiming to come from Alice fails the signature check, even
    /// though it was sealed correctly to Bob.
    #[test]
    fn a_forged_sender_is_caught_inside_the_seal() {
        let (alice, bob, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
        let mut envelope = Envelope::new(&mallory, &bob.did(), MessageKind::Direct, serde_json::json!("hi"));
        envelope.from = alice.did();
        let signed = jws::sign(&mallory, jws::Kind::Envelope, &envelope).unwrap();
        let recipient = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&bob.did().x25519_public_key()).unwrap();
        let aad = bob.did().to_string();
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &recipient,
            INFO,
            signed.as_bytes(),
            aad.as_bytes(),
            &mut rng(),
        )
        .unwrap();
        let sealed = Sealed {
            v: 1,
            enc: URL_SAFE_NO_PAD.encode(enc.to_bytes()),
            ct: URL_SAFE_NO_PAD.encode(ct),
        };
        assert!(matches!(Mailbox::new(bob).open(&sealed), Err(Error::BadSignature)));
        assert!(
            seal(&mallory, &envelope).is_err(),
            "seal refuses to sign for someone else"
        );
    }

    #[test]
    fn the_x25519_secret_matches_the_did_key_agreement_key() {
        let identity = Identity::generate();
        let secret = identity.x25519_secret();
        let private = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret.as_ref()).unwrap();
        let public = X25519HkdfSha256::sk_to_pk(&private);
        assert_eq!(
            public.to_bytes().as_slice(),
            identity.did().x25519_public_key().as_slice()
        );
    }
}
