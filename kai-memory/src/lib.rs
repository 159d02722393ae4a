//! # kai-memory
//!
//! Memory for kAI agents. This release holds the encrypted [`vault`]: secrets and private records
//! sealed with AES-256-GCM under a data key that a passphrase-derived key wraps.

mod error;
mod fs;
pub mod vault;

pub use error::Error;
pub use vault::{Kdf, Secret, Vault};
