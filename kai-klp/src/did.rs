//! `did:key` DIDs for Ed25519 keys: parsing, formatting, and the DID document the method derives.

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

use crate::error::Error;

/// The multicodec prefix of an Ed25519 public key (`ed25519-pub`, 0xed as an unsigned varint).
const ED25519_PUB: [u8; 2] = [0xed, 0x01];
/// The multicodec prefix of an X25519 public key (`x25519-pub`, 0xec).
const X25519_PUB: [u8; 2] = [0xec, 0x01];
/// The length of an Ed25519 key's base58btc form after the `z`: the 34 bytes of prefix and key always
/// take 47 digits (the prefix's first byte, 0xed, fixes the magnitude).
const ED25519_BASE58_LEN: usize = 47;

/// A `did:key` DID naming an Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Did {
    key: VerifyingKey,
}

impl Did {
    /// The DID of this public key.
    pub fn from_public_key(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The DID of these 32 public-key bytes; fails unless they are a valid, non-weak Ed25519 point.
    pub fn from_public_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidKey("not an Ed25519 public key".into()))?;
        // RFC 8032 decoding refuses y >= p: a second spelling of a key would be a second DID for it.
        // With p = 2^255 - 19 that is y's 255 bits all ones but the lowest byte, which is at least 0xed.
        // (The other non-canonical form, x = 0 with the sign bit set, has y = ±1: small order, refused
        // below.)
        let y_at_least_p = bytes[0] >= 0xed && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[31] & 0x7f == 0x7f;
        if y_at_least_p {
            return Err(Error::InvalidKey(
                "not the canonical encoding of an Ed25519 public key".into(),
            ));
        }
        if key.is_weak() {
            return Err(Error::InvalidKey(
                "a small-order Ed25519 key cannot identify anyone".into(),
            ));
        }
        Ok(Self { key })
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The multibase (base58btc) form of the key, as it appears after `did:key:`.
    pub fn multibase(&self) -> String {
        multibase(&ED25519_PUB, self.key.as_bytes())
    }

    /// The X25519 key-agreement public key this Ed25519 key converts to (RFC 7748 birational map).
    pub fn x25519_public_key(&self) -> [u8; 32] {
        self.key.to_montgomery().to_bytes()
    }

    /// The key-agreement key's multibase form (`z6LS…`).
    pub fn x25519_multibase(&self) -> String {
        multibase(&X25519_PUB, &self.x25519_public_key())
    }

    /// Verifies an Ed25519 signature by this DID's key (strict: malleable encodings are rejected).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
        self.key
            .verify_strict(message, &signature)
            .map_err(|_| Error::BadSignature)
    }

    /// The DID document the `did:key` method's algorithm derives: two `Multikey` verification methods,
    /// the Ed25519 key (authentication, assertion, capability invocation and delegation) and the
    /// X25519 key converted from it (key agreement), each with the id `<did>#<its multibase>`.
    pub fn document(&self) -> Value {
        let did = self.to_string();
        let signing = format!("{did}#{}", self.multibase());
        let agreement = format!("{did}#{}", self.x25519_multibase());
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": did,
            "verificationMethod": [
                {"id": signing, "type": "Multikey", "controller": did, "publicKeyMultibase": self.multibase()},
                {"id": agreement, "type": "Multikey", "controller": did, "publicKeyMultibase": self.x25519_multibase()}
            ],
            "authentication": [signing],
            "assertionMethod": [signing],
            "capabilityDelegation": [signing],
            "capabilityInvocation": [signing],
            "keyAgreement": [agreement]
        })
    }
}

fn multibase(prefix: &[u8; 2], key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(prefix);
    bytes.extend_from_slice(key);
    format!("z{}", bs58::encode(bytes).into_string())
}

impl std::str::FromStr for Did {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut rest = text
            .strip_prefix("did:key:")
            .ok_or_else(|| Error::did("not a did:key DID (it must start with `did:key:`)"))?;
        // The method's versioned form, `did:key:<version>:<multibase>`: version 1 is the unversioned
        // form, and no other is defined.
        if let Some((version, multibase)) = rest.split_once(':') {
            if version != "1" {
                return Err(Error::did(
                    if version.len() <= 8 && version.bytes().all(|b| b.is_ascii_digit()) {
                        format!("did:key version {version} is not supported (only 1 is defined)")
                    } else {
                        "a did:key is `did:key:<multibase>` or `did:key:1:<multibase>`".to_owned()
                    },
                ));
            }
            rest = multibase;
        }
        // A DID URL's fragment or path is not part of the DID.
        if rest.contains(['#', '/', '?']) {
            return Err(Error::did("a DID URL, not a DID: remove the path, query or fragment"));
        }
        let encoded = rest
            .strip_prefix('z')
            .ok_or_else(|| Error::did("the key must be base58btc multibase (starting with 'z')"))?;
        // Checked before decoding: base58 decoding takes time quadratic in the length, and DIDs arrive
        // before any signature is checked.
        if encoded.len() != ED25519_BASE58_LEN {
            return Err(Error::did(format!(
                "an Ed25519 did:key has {ED25519_BASE58_LEN} base58 digits after the 'z', not {}",
                encoded.len()
            )));
        }
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|e| Error::did(format!("the key is not valid base58btc: {e}")))?;
        let Some(key) = bytes.strip_prefix(&ED25519_PUB) else {
            let codec = bytes
                .get(..2)
                .map(|b| format!("{:02x}{:02x}", b[0], b[1]))
                .unwrap_or_default();
            return Err(Error::did(format!(
                "not an Ed25519 key (multicodec prefix 0x{codec}, expected 0xed01)"
            )));
        };
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| Error::did(format!("an Ed25519 key is 32 bytes, not {}", key.len())))?;
        Self::from_public_bytes(key).map_err(|e| Error::did(e.to_string()))
    }
}

impl std::fmt::Display for Did {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "did:key:{}", self.multibase())
    }
}

impl std::fmt::Debug for Did {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Did({self})")
    }
}

impl serde::Serialize for Did {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Did {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
