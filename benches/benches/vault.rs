//! The vault: unlocking at the default KDF cost, and sealing/opening entries, each beside the raw
//! primitive measured in the same run (PBKDF2-HMAC-SHA256 at the same cost, AES-256-GCM on the same
//! bytes).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kai_memory::{Kdf, Vault};

fn vault(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.vault");
    let mut vault = Vault::create(&path, "passphrase", Kdf::default()).unwrap();
    for i in 0..100 {
        vault
            .put_secret(&format!("key-{i}"), "sk-0123456789abcdef0123456789abcdef")
            .unwrap();
    }
    drop(vault); // one open handle at a time

    let mut group = c.benchmark_group("vault_unlock");
    group.sample_size(10);
    group.bench_function("open_pbkdf2_600k_100_entries", |b| {
        b.iter(|| Vault::open(&path, "passphrase").unwrap())
    });
    group.bench_function("raw_pbkdf2_hmac_sha256_600k", |b| {
        b.iter(|| {
            let mut key = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"passphrase", b"0123456789abcdef", 600_000, &mut key);
            key
        })
    });
    group.finish();

    let mut vault = Vault::open(&path, "passphrase").unwrap();
    let mut group = c.benchmark_group("vault_entry");
    group.bench_function("get_secret", |b| b.iter(|| vault.secret("key-42").unwrap()));
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&[1u8; 12]),
            Payload {
                msg: b"sk-0123456789abcdef0123456789abcdef",
                aad: b"aad",
            },
        )
        .unwrap();
    group.bench_function("raw_aes_256_gcm_open_36_bytes", |b| {
        b.iter(|| {
            cipher
                .decrypt(
                    Nonce::from_slice(&[1u8; 12]),
                    Payload {
                        msg: &sealed,
                        aad: b"aad",
                    },
                )
                .unwrap()
        })
    });
    group.bench_function("raw_aes_256_gcm_seal_36_bytes", |b| {
        b.iter(|| {
            cipher
                .encrypt(
                    Nonce::from_slice(&[1u8; 12]),
                    Payload {
                        msg: b"sk-0123456789abcdef0123456789abcdef",
                        aad: b"aad",
                    },
                )
                .unwrap()
        })
    });
    group.sample_size(20);
    group.bench_function("put_secret_with_atomic_save_100_entries", |b| {
        b.iter_batched(
            || (),
            |()| {
                vault
                    .put_secret("key-7", "sk-fedcba9876543210fedcba9876543210")
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, vault);
criterion_main!(benches);
