//! The vault file, version 2:
//!
//! ```text
//! magic      8 bytes   "KAIVAULT"
//! version    u16 BE    2
//! header_len u32 BE
//! header     JSON      { vault_id, kdf: {alg, …, salt}, check, key: {nonce, ciphertext} }
//! body_len   u64 BE
//! body       JSON      { nonce, ciphertext }: sealed { entries: [{ kind, name, nonce, ciphertext }] }
//! mac        32 bytes  HMAC-SHA256 over every byte before it
//! ```
//!
//! The body (the entries' names included) is sealed with AES-256-GCM under the data key, with associated
//! data "kai-vault/v2/body" and the vault id, so a file shows nothing of what it holds but its size.
//! Version 1, whose body was the entries' JSON in the clear (names readable, values sealed), is still
//! read, and rewritten as version 2 when it is opened.
//!
//! Keys: the key-encryption key (KEK) comes from the passphrase through the header's KDF and salt.
//! `check` is HMAC-SHA256(KEK, "kai-vault/v1/check") cut to 16 bytes, so a wrong passphrase is told
//! apart from a modified file. `key` is the 32-byte data key sealed with AES-256-GCM under the KEK,
//! its associated data binding it to the vault id and KDF parameters. Each entry is sealed with
//! AES-256-GCM under the data key with a random 96-bit nonce and associated data naming the vault, the
//! entry's kind and its name, so entries cannot be swapped or renamed. The MAC key is
//! HKDF-SHA256(data key, salt = vault id, info = "kai-vault/v1/mac").

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::bytes::Reader;
use crate::error::Error;
use crate::vault::kdf::Kdf;

pub(crate) const MAGIC: &[u8; 8] = b"KAIVAULT";
pub(crate) const VERSION: u16 = 2;
/// The version whose body is not sealed as a whole (its entries' names are in the clear).
const VERSION_1: u16 = 1;
const MAC_LEN: usize = 32;
const CHECK_LEN: usize = 16;

/// The header: everything needed to turn a passphrase into the data key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    #[serde(with = "b64")]
    pub(crate) vault_id: Vec<u8>,
    pub(crate) kdf: KdfRecord,
    #[serde(with = "b64")]
    pub(crate) check: Vec<u8>,
    pub(crate) key: Sealed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KdfRecord {
    #[serde(flatten)]
    pub(crate) kdf: Kdf,
    #[serde(with = "b64")]
    pub(crate) salt: Vec<u8>,
}

/// A nonce and an AES-256-GCM ciphertext (tag included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sealed {
    #[serde(with = "b64")]
    pub(crate) nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Secret,
    Record,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) sealed: Sealed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) entries: Vec<Entry>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Seals `plaintext` under `key` with a fresh random 96-bit nonce.
pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Sealed, Error> {
    seal_with_nonce(key, random::<12>(), plaintext, aad)
}

fn seal_with_nonce(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8], aad: &[u8]) -> Result<Sealed, Error> {
    let cipher = Aes256Gcm::new(key.into());
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .map_err(|_| Error::InvalidParameters("the plaintext is too long for AES-GCM".into()))?;
    Ok(Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Opens `sealed`; `None` when authentication fails.
pub(crate) fn open(key: &[u8; 32], sealed: &Sealed, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.nonce.len() != 12 {
        return None;
    }
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

pub(crate) fn check_value(kek: &[u8; 32]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(kek)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"kai-vault/v1/check");
    mac.finalize().into_bytes()[..CHECK_LEN].to_vec()
}

pub(crate) fn key_aad(vault_id: &[u8], kdf: &KdfRecord) -> Vec<u8> {
    let mut aad = b"kai-vault/v1/key".to_vec();
    aad.extend_from_slice(vault_id);
    // Serializing a value we just deserialized or built cannot fail; an empty string would only make
    // the key fail to open, never panic.
    aad.extend_from_slice(serde_json::to_string(kdf).unwrap_or_default().as_bytes());
    aad
}

pub(crate) fn entry_aad(vault_id: &[u8], kind: Kind, name: &str) -> Vec<u8> {
    let mut aad = b"kai-vault/v1/entry".to_vec();
    aad.extend_from_slice(vault_id);
    aad.push(match kind {
        Kind::Secret => 0,
        Kind::Record => 1,
    });
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn mac_key(data_key: &[u8; 32], vault_id: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<Sha256>::new(Some(vault_id), data_key)
        .expand(b"kai-vault/v1/mac", key.as_mut())
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
    key
}

fn file_mac(data_key: &[u8; 32], vault_id: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(mac_key(data_key, vault_id).as_ref())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// The associated data of a sealed body.
fn body_aad(vault_id: &[u8]) -> Vec<u8> {
    [b"kai-vault/v2/body".as_slice(), vault_id].concat()
}

/// Serializes a whole file.
pub(crate) fn encode(header: &Header, body: &Body, data_key: &[u8; 32]) -> Result<Vec<u8>, Error> {
    let header_json = serde_json::to_vec(header).map_err(|e| Error::InvalidParameters(e.to_string()))?;
    let entries = Zeroizing::new(serde_json::to_vec(body).map_err(|e| Error::InvalidParameters(e.to_string()))?);
    let sealed = seal(data_key, &entries, &body_aad(&header.vault_id))?;
    let body_json = serde_json::to_vec(&sealed).map_err(|e| Error::InvalidParameters(e.to_string()))?;
    let header_len =
        u32::try_from(header_json.len()).map_err(|_| Error::InvalidParameters("header too large".into()))?;
    let mut out = Vec::with_capacity(8 + 2 + 4 + header_json.len() + 8 + body_json.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(&header_json);
    out.extend_from_slice(&(body_json.len() as u64).to_be_bytes());
    out.extend_from_slice(&body_json);
    let mut mac = file_mac(data_key, &header.vault_id);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Whether the file `bytes` (one [`parse`] accepted) is in the current format.
pub(crate) fn is_current(bytes: &[u8]) -> bool {
    bytes.get(8..10) == Some(VERSION.to_be_bytes().as_slice())
}

/// A file split into its parts, before any key is known.
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    version: u16,
    body: &'a [u8],
    authenticated: &'a [u8],
    mac: &'a [u8],
}

/// Splits a file, checking magic, version and lengths. Truncation anywhere is [`Error::Truncated`].
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Error> {
    let mut reader = Reader::new(bytes, 0);
    let magic = reader
        .take(MAGIC.len())
        .map_err(|e| if MAGIC.starts_with(bytes) { e } else { Error::NotAVault })?;
    if magic != MAGIC {
        return Err(Error::NotAVault);
    }
    let version = u16::from_be_bytes(reader.array()?);
    if version != VERSION && version != VERSION_1 {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let header_len = u32::from_be_bytes(reader.array()?) as usize;
    let header_json = reader.take(header_len)?;
    let body_len = usize::try_from(u64::from_be_bytes(reader.array()?)).map_err(|_| Error::Truncated)?;
    let body = reader.take(body_len)?;
    let authenticated_len = reader.at;
    let mac = reader.take(MAC_LEN)?;
    if reader.at != bytes.len() {
        return Err(Error::tampered("contents"));
    }
    let header: Header = serde_json::from_slice(header_json).map_err(|_| Error::tampered("header"))?;
    if header.check.len() != CHECK_LEN || header.vault_id.len() != 16 {
        return Err(Error::tampered("header"));
    }
    Ok(Parsed {
        header,
        version,
        body,
        authenticated: &bytes[..authenticated_len],
        mac,
    })
}

impl Parsed<'_> {
    /// Checks the MAC with the data key, opens the body and parses it.
    pub(crate) fn body(&self, data_key: &[u8; 32]) -> Result<Body, Error> {
        let mut mac = file_mac(data_key, &self.header.vault_id);
        mac.update(self.authenticated);
        mac.verify_slice(self.mac).map_err(|_| Error::tampered("contents"))?;
        if self.version == VERSION_1 {
            return serde_json::from_slice(self.body).map_err(|_| Error::tampered("contents"));
        }
        let sealed: Sealed = serde_json::from_slice(self.body).map_err(|_| Error::tampered("contents"))?;
        let entries =
            open(data_key, &sealed, &body_aad(&self.header.vault_id)).ok_or_else(|| Error::tampered("contents"))?;
        serde_json::from_slice(&entries).map_err(|_| Error::tampered("contents"))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct GcmVector {
        source: String,
        key: String,
        iv: String,
        aad: String,
        #[serde(default)]
        plaintext: String,
        ciphertext: String,
        tag: String,
        valid: bool,
    }

    fn bytes(hex_text: &str) -> Vec<u8> {
        hex::decode(hex_text).unwrap()
    }

    /// NIST CAVP (gcmEncryptExtIV256, gcmDecrypt256) and McGrew-Viega AES-256-GCM vectors.
    #[test]
    fn aes_256_gcm_matches_published_vectors() {
        let vectors: Vec<GcmVector> =
            serde_json::from_str(include_str!("../../tests/vectors/aes_256_gcm.json")).unwrap();
        assert!(vectors.len() >= 10);
        for v in vectors {
            let key: [u8; 32] = bytes(&v.key).try_into().unwrap();
            let nonce: [u8; 12] = bytes(&v.iv).try_into().unwrap();
            let mut expected = bytes(&v.ciphertext);
            expected.extend(bytes(&v.tag));
            let sealed = Sealed {
                nonce: nonce.to_vec(),
                ciphertext: expected.clone(),
            };
            let opened = open(&key, &sealed, &bytes(&v.aad));
            if v.valid {
                let ours = seal_with_nonce(&key, nonce, &bytes(&v.plaintext), &bytes(&v.aad)).unwrap();
                assert_eq!(ours.ciphertext, expected, "{}", v.source);
                assert_eq!(
                    opened.as_deref().map(Vec::as_slice),
                    Some(bytes(&v.plaintext).as_slice()),
                    "{}",
                    v.source
                );
            } else {
                assert!(opened.is_none(), "{} must fail to open", v.source);
            }
        }
    }

    #[test]
    fn nonces_are_fresh_and_wrong_lengths_are_rejected() {
        let key = [9u8; 32];
        let a = seal(&key, b"same", b"").unwrap();
        let b = seal(&key, b"same", b"").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        let short = Sealed {
            nonce: vec![0; 8],
            ciphertext: a.ciphertext,
        };
        assert!(open(&key, &short, b"").is_none());
    }
}
