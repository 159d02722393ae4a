//! KLP costs beside the raw primitives measured in the same run: consent tokens (issue, verify a
//! two-link chain) against Ed25519 sign/verify; sealed messages against ChaCha20-Poly1305 alone.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use kai_klp::consent::issue;
use kai_klp::sealed::{Envelope, Mailbox, MessageKind, seal};
use kai_klp::{Capability, Identity, Verifier};

fn klp(c: &mut Criterion) {
    let service = Identity::generate();
    let alice = Identity::generate();
    let capability = Capability::call_tool("web_search");
    let hour = Duration::from_secs(3600);

    let mut group = c.benchmark_group("consent");
    group.bench_function("issue_token", |b| {
        b.iter(|| issue(&service, &alice.did(), std::slice::from_ref(&capability), hour, &[]).unwrap())
    });
    let grant = issue(&service, &alice.did(), std::slice::from_ref(&capability), hour, &[]).unwrap();
    let invocation = issue(
        &alice,
        &service.did(),
        std::slice::from_ref(&capability),
        hour,
        &[grant],
    )
    .unwrap();
    let verifier = Verifier::new(service.did(), [service.did()]);
    group.bench_function("verify_two_link_chain", |b| {
        b.iter(|| verifier.authorize(&invocation, &capability).unwrap())
    });
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = invocation.as_bytes();
    let signature = key.sign(message);
    group.bench_function("raw_ed25519_sign", |b| b.iter(|| key.sign(message)));
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| key.verifying_key().verify(message, &signature).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("sealed");
    let bob = Identity::generate();
    let body = serde_json::json!({"input": "What is the weather in Oslo tomorrow, and should I take an umbrella?"});
    group.bench_function("seal_message", |b| {
        b.iter(|| {
            seal(
                &alice,
                &Envelope::new(&alice, &bob.did(), MessageKind::Direct, body.clone()),
            )
            .unwrap()
        })
    });
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()));
    group.bench_function("seal_and_open_message", |b| {
        b.iter(|| {
            let sealed = seal(
                &alice,
                &Envelope::new(&alice, &bob.did(), MessageKind::Direct, body.clone()),
            )
            .unwrap();
            mailbox.open(&sealed).unwrap()
        })
    });
    let cipher = ChaCha20Poly1305::new(&[3u8; 32].into());
    let plaintext = vec![0u8; 400];
    group.bench_function("raw_chacha20poly1305_seal_400_bytes", |b| {
        b.iter(|| {
            cipher
                .encrypt(Nonce::from_slice(&[0u8; 12]), plaintext.as_slice())
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, klp);
criterion_main!(benches);
