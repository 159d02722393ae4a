//! Deriving the key-encryption key from a passphrase: PBKDF2-HMAC-SHA256 or Argon2id.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// How the passphrase becomes a key. Stored in the vault's header, so each vault remembers its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg", rename_all = "kebab-case")]
pub enum Kdf {
    /// PBKDF2 with HMAC-SHA256 (RFC 8018).
    Pbkdf2Sha256 {
        /// Iterations; OWASP recommends at least 600,000.
        iterations: u32,
    },
    /// Argon2id (RFC 9106), version 0x13.
    Argon2id {
        /// Memory in KiB.
        memory_kib: u32,
        /// Passes over memory.
        iterations: u32,
        /// Lanes.
        parallelism: u32,
    },
}

impl Default for Kdf {
    /// PBKDF2-HMAC-SHA256 with 600,000 iterations.
    fn default() -> Self {
        Kdf::Pbkdf2Sha256 { iterations: 600_000 }
    }
}

/// Upper bounds on parameters read from a file, so a crafted header cannot make opening it take hours
/// or exhaust memory.
const MAX_ITERATIONS: u32 = 100_000_000;
/// Argon2's memory: RFC 9106's first recommended setting (2 GiB, 1 pass) is the most it may ask for.
const MAX_ARGON2_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Argon2's work is memory times passes, so that product is bounded, not each alone: 2 GiB x 1 pass,
/// 1 GiB x 2 or RFC 9106's second setting (64 MiB x 3) open; 4 GiB x 1,000 does not.
const MAX_ARGON2_KIB_PASSES: u64 = 2 * 1024 * 1024;

impl Kdf {
    /// Argon2id with the OWASP baseline: 19 MiB, 2 passes, 1 lane.
    pub fn argon2id_default() -> Self {
        Kdf::Argon2id {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }

    /// Checks the parameters are usable and within the bounds a file may ask for.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        match *self {
            Kdf::Pbkdf2Sha256 { iterations } if iterations == 0 || iterations > MAX_ITERATIONS => {
                Err(Error::InvalidParameters(format!(
                    "PBKDF2 iterations must be 1..={MAX_ITERATIONS}, not {iterations}"
                )))
            }
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let work = u64::from(memory_kib) * u64::from(iterations);
                if memory_kib > MAX_ARGON2_MEMORY_KIB || iterations == 0 || work > MAX_ARGON2_KIB_PASSES {
                    return Err(Error::InvalidParameters(format!(
                        "Argon2id memory must be at most {MAX_ARGON2_MEMORY_KIB} KiB, passes at least 1, and \
                         memory times passes at most {MAX_ARGON2_KIB_PASSES} KiB (not {memory_kib} KiB x {iterations})"
                    )));
                }
                argon2::Params::new(memory_kib, iterations, parallelism, Some(32))
                    .map(|_| ())
                    .map_err(|e| Error::InvalidParameters(e.to_string()))
            }
            Kdf::Pbkdf2Sha256 { .. } => Ok(()),
        }
    }

    /// Derives a 32-byte key.
    pub(crate) fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
        self.validate()?;
        let mut key = Zeroizing::new([0u8; 32]);
        match *self {
            Kdf::Pbkdf2Sha256 { iterations } => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(passphrase, salt, iterations, key.as_mut());
            }
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params = argon2::Params::new(memory_kib, iterations, parallelism, Some(32))
                    .map_err(|e| Error::InvalidParameters(e.to_string()))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(passphrase, salt, key.as_mut())
                    .map_err(|e| Error::InvalidParameters(e.to_string()))?;
            }
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Pbkdf2Vector {
        source: String,
        password: String,
        salt: String,
        iterations: u32,
        dk: String,
    }

    /// RFC 7914 section 11 and the OpenSSL PBKDF2-HMAC-SHA256 vectors. PBKDF2's output blocks are
    /// independent, so the first bytes of a longer key are the key of that length.
    #[test]
    fn pbkdf2_matches_published_vectors() {
        let vectors: Vec<Pbkdf2Vector> =
            serde_json::from_str(include_str!("../../tests/vectors/pbkdf2_hmac_sha256.json")).unwrap();
        assert!(vectors.len() >= 5);
        for v in vectors {
            let ours = Kdf::Pbkdf2Sha256 {
                iterations: v.iterations,
            }
            .derive(v.password.as_bytes(), v.salt.as_bytes())
            .unwrap();
            let expected = hex::decode(&v.dk).unwrap();
            let n = expected.len().min(32);
            assert_eq!(&ours[..n], &expected[..n], "{}", v.source);
        }
    }

    #[derive(Deserialize)]
    struct Argon2Vector {
        password: String,
        salt: String,
        secret: String,
        associated_data: String,
        memory_kib: u32,
        passes: u32,
        lanes: u32,
        tag: String,
    }

    /// RFC 9106 section 5.3. The vector uses a secret and associated data, which vaults do not; the
    /// same primitive, algorithm and version are checked here, and `derive` is checked against it below.
    #[test]
    fn argon2id_matches_rfc_9106() {
        let v: Argon2Vector = serde_json::from_str(include_str!("../../tests/vectors/argon2id.json")).unwrap();
        let ad = hex::decode(&v.associated_data).unwrap();
        let params = argon2::ParamsBuilder::new()
            .m_cost(v.memory_kib)
            .t_cost(v.passes)
            .p_cost(v.lanes)
            .data(argon2::AssociatedData::new(&ad).unwrap())
            .output_len(32)
            .build()
            .unwrap();
        let secret = hex::decode(&v.secret).unwrap();
        let argon =
            argon2::Argon2::new_with_secret(&secret, argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .unwrap();
        let mut tag = [0u8; 32];
        argon
            .hash_password_into(
                &hex::decode(&v.password).unwrap(),
                &hex::decode(&v.salt).unwrap(),
                &mut tag,
            )
            .unwrap();
        assert_eq!(hex::encode(tag), v.tag);

        let ours = Kdf::Argon2id {
            memory_kib: 32,
            iterations: 3,
            parallelism: 4,
        }
        .derive(b"password", b"somesaltsomesalt")
        .unwrap();
        let mut plain = [0u8; 32];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(32, 3, 4, Some(32)).unwrap(),
        )
        .hash_password_into(b"password", b"somesaltsomesalt", &mut plain)
        .unwrap();
        assert_eq!(*ours, plain);
    }

    #[test]
    fn parameters_are_bounded() {
        assert!(Kdf::Pbkdf2Sha256 { iterations: 0 }.validate().is_err());
        assert!(Kdf::Pbkdf2Sha256 { iterations: u32::MAX }.validate().is_err());
        assert!(
            Kdf::Argon2id {
                memory_kib: u32::MAX,
                iterations: 2,
                parallelism: 1
            }
            .validate()
            .is_err()
        );
        assert!(
            Kdf::Argon2id {
                memory_kib: 1024,
                iterations: 0,
                parallelism: 1
            }
            .validate()
            .is_err()
        );
        assert!(Kdf::default().validate().is_ok());
        assert!(Kdf::argon2id_default().validate().is_ok());
    }

    /// Each bound alone let a crafted header ask for 4 GiB x 1,000 passes (hours of work): the product
    /// is bounded too, and RFC 9106's recommended settings stay open.
    #[test]
    fn argon2_work_is_bounded_as_memory_times_passes() {
        let argon2 = |memory_kib, iterations| Kdf::Argon2id {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        assert!(argon2(4 * 1024 * 1024, 1_000).validate().is_err());
        assert!(argon2(1024 * 1024, 1_000).validate().is_err());
        assert!(argon2(1024 * 1024, 3).validate().is_err());
        assert!(
            argon2(2 * 1024 * 1024, 1).validate().is_ok(),
            "RFC 9106, first recommendation"
        );
        assert!(
            argon2(64 * 1024, 3).validate().is_ok(),
            "RFC 9106, second recommendation"
        );
        assert!(argon2(1024 * 1024, 2).validate().is_ok());
        assert!(
            argon2(8, 100_000).validate().is_ok(),
            "little memory, many passes: still bounded work"
        );
    }
}
