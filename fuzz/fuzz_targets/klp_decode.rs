//! Everything KLP reads from a peer or a file — DIDs, consent tokens, presence records, sealed messages,
//! handshake frames, audit logs — turns arbitrary bytes into an error, never a panic or an unbounded
//! allocation.
#![no_main]

use std::sync::OnceLock;

use kai_klp::presence::Directory;
use kai_klp::sealed::{Mailbox, Sealed};
use kai_klp::session::{FrameTransport, accept, memory_pair};
use kai_klp::{Capability, Did, Identity, Verifier};
use libfuzzer_sys::fuzz_target;

fn service() -> &'static Identity {
    static SERVICE: OnceLock<Identity> = OnceLock::new();
    SERVICE.get_or_init(|| Identity::from_secret_bytes(&[5; 32]))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = text.parse::<Did>();

    let verifier = Verifier::new(service().did(), [service().did()]);
    let _ = verifier.authorize_at(&text, &Capability::call_tool("x"), 1_800_000_000);
    let _ = verifier.admit_invocation_at(&text, &service().did(), "r", &Capability::call_tool("x"), 1_800_000_000);
    let _ = Directory::new().offer_at(&text, 1_800_000_000);

    let middle = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (enc, ct) = text.split_at(middle);
    let sealed = Sealed {
        v: 1,
        enc: enc.to_owned(),
        ct: ct.to_owned(),
    };
    let _ = Mailbox::new(Identity::from_secret_bytes(&[6; 32])).open(&sealed);

    // The bytes as an audit log on disk, verified and opened (which may append a recovery entry).
    let path = std::env::temp_dir().join(format!("kai-fuzz-audit-{}.log", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = kai_klp::audit::verify(&path, &service().did(), None);
        let _ = kai_klp::audit::AuditLog::open(&path, Identity::from_secret_bytes(&[5; 32]));
    }

    // The bytes as the first handshake frame a responder receives.
    let (mut peer, ours) = memory_pair();
    futures::executor::block_on(async {
        let _ = peer.send(data).await;
        drop(peer);
        let _ = accept(Identity::from_secret_bytes(&[7; 32]), ours).await;
    });
});
