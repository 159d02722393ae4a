//! An agent's own key pair.

use ed25519_dalek::{Signer as _, SigningKey};
#[cfg(feature = "vault")]
use kai_memory::Vault;
use zeroize::Zeroizing;

use crate::did::Did;
#[cfg(feature = "vault")]
use crate::error::Error;

/// An agent's Ed25519 signing key. The secret is wiped from memory when dropped (each clone's own copy)
/// and never appears in `Debug` output.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A new random identity, from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The identity with this 32-byte secret key (the RFC 8032 seed).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The secret key, for storing it elsewhere; wiped when the returned value is dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// This identity's DID.
    pub fn did(&self) -> Did {
        Did::from_public_key(self.key.verifying_key())
    }

    /// The X25519 secret matching this identity's key-agreement key (the RFC 7748 / RFC 8032
    /// conversion of the Ed25519 secret); wiped when dropped.
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_scalar_bytes())
    }

    /// Signs `message` (Ed25519, RFC 8032), returning the 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Stores the secret key in `vault` under `name` (as a secret holding the hex-encoded seed).
    #[cfg(feature = "vault")]
    pub fn store(&self, vault: &mut Vault, name: &str) -> Result<(), Error> {
        let encoded = Zeroizing::new(to_hex(self.secret_bytes().as_ref()));
        vault.put_secret(name, &encoded)?;
        Ok(())
    }

    /// Loads an identity stored with [`store`](Self::store); `None` when `name` holds nothing.
    #[cfg(feature = "vault")]
    pub fn load(vault: &Vault, name: &str) -> Result<Option<Self>, Error> {
        let Some(secret) = vault.secret(name)? else {
            return Ok(None);
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        from_hex(secret.expose(), &mut bytes)?;
        Ok(Some(Self::from_secret_bytes(&bytes)))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("did", &self.did())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "vault")]
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "vault")]
fn from_hex(text: &str, out: &mut [u8; 32]) -> Result<(), Error> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return Err(Error::InvalidKey("a stored identity must be 64 hex digits".into()));
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| {
            (c as char)
                .to_digit(16)
                .ok_or_else(|| Error::InvalidKey("a stored identity is not hex".into()))
        };
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(())
}
