//! KLP costs beside the raw primitives measured in the same run: consent tokens (issue, verify a
//! two-link chain, admit an invocation in memory and with a replay file) against Ed25519 sign/verify; sealed messages against ChaCha20-Poly1305 alone;
//! session handshakes (in memory and over loopback TCP) against a bare Noise XX handshake with `snow`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use futures::executor::block_on;
use kai_klp::consent::issue;
use kai_klp::sealed::{Envelope, Mailbox, MessageKind, seal};
use kai_klp::session::{TcpTransport, accept, connect, memory_pair};
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
    // The token a caller presents: its invocation of one request, proven by the grant.
    let invocation = kai_klp::consent::invoke(
        &alice,
        &service.did(),
        std::slice::from_ref(&capability),
        Duration::from_secs(kai_klp::consent::MAX_INVOCATION_SECONDS),
        &[grant],
        "request-1",
    )
    .unwrap();
    let verifier = Verifier::new(service.did(), [service.did()]);
    group.bench_function("verify_two_link_chain", |b| {
        b.iter(|| verifier.authorize(&invocation, &capability).unwrap())
    });
    // Admitting an invocation takes its nonce: each iteration presents a fresh one (made untimed).
    let fresh_invocation = || {
        let grant = issue(&service, &alice.did(), std::slice::from_ref(&capability), hour, &[]).unwrap();
        kai_klp::consent::invoke(
            &alice,
            &service.did(),
            std::slice::from_ref(&capability),
            Duration::from_secs(60),
            &[grant],
            "request-1",
        )
        .unwrap()
    };
    let admit = |verifier: &Verifier, b: &mut criterion::Bencher| {
        b.iter_batched(
            fresh_invocation,
            |token| {
                verifier
                    .admit_invocation(&token, &alice.did(), "request-1", &capability)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    };
    let in_memory = Verifier::new(service.did(), [service.did()]).with_replay_capacity(1_000_000);
    group.bench_function("admit_invocation", |b| admit(&in_memory, b));
    let directory = tempfile::tempdir().unwrap();
    let on_file = Verifier::new(service.did(), [service.did()])
        .with_replay_capacity(1_000_000)
        .with_replay_file(directory.path().join("replay"))
        .unwrap();
    group.bench_function("admit_invocation_replay_file", |b| admit(&on_file, b));
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
    // One sender's many messages: known to the mailbox, whose cache holds them all inside its window.
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes())).with_capacity(10_000_000);
    mailbox.know(alice.did());
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

/// A bare `Noise_XX_25519_ChaChaPoly_SHA256` handshake between two fresh states, in memory.
fn bare_noise_xx(initiator_key: &[u8], responder_key: &[u8]) {
    let params: snow::params::NoiseParams = kai_klp::session::NOISE_PARAMS.parse().unwrap();
    let mut initiator = snow::Builder::new(params.clone())
        .local_private_key(initiator_key)
        .build_initiator()
        .unwrap();
    let mut responder = snow::Builder::new(params)
        .local_private_key(responder_key)
        .build_responder()
        .unwrap();
    let (mut message, mut payload) = ([0u8; 1024], [0u8; 1024]);
    for turn in 0..3 {
        let (writer, reader) = if turn % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let length = writer.write_message(&[], &mut message).unwrap();
        reader.read_message(&message[..length], &mut payload).unwrap();
    }
    initiator.into_transport_mode().unwrap();
    responder.into_transport_mode().unwrap();
}

fn copy(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.secret_bytes())
}

fn sessions(c: &mut Criterion) {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let bob_did = bob.did();
    let mut group = c.benchmark_group("session");
    group.bench_function("handshake_memory", |b| {
        b.iter(|| {
            let (x, y) = memory_pair();
            let (client, server) =
                block_on(async { futures::join!(connect(copy(&alice), Some(&bob_did), x), accept(copy(&bob), y)) });
            (client.unwrap(), server.unwrap())
        })
    });
    group.bench_function("raw_noise_xx_handshake", |b| {
        b.iter(|| bare_noise_xx(alice.x25519_secret().as_ref(), bob.x25519_secret().as_ref()))
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    group.bench_function("handshake_loopback_tcp", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let server = async {
                    let (stream, _) = listener.accept().await.unwrap();
                    accept(copy(&bob), TcpTransport::new(stream)).await.unwrap()
                };
                let client = async {
                    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
                    connect(copy(&alice), Some(&bob_did), TcpTransport::new(stream))
                        .await
                        .unwrap()
                };
                futures::join!(client, server)
            })
        })
    });

    let (x, y) = memory_pair();
    let (client, server) =
        block_on(async { futures::join!(connect(copy(&alice), Some(&bob_did), x), accept(copy(&bob), y)) });
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let envelope = Envelope::new(
        &alice,
        &bob_did,
        MessageKind::Direct,
        serde_json::json!({"input": "What is the weather in Oslo tomorrow, and should I take an umbrella?"}),
    );
    group.bench_function("send_and_receive_envelope", |b| {
        b.iter(|| {
            block_on(async {
                client.send(&envelope).await.unwrap();
                server.recv().await.unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, klp, sessions);
criterion_main!(benches);
