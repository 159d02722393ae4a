//! Sealed messages: only the recipient opens them, and altered, replayed, stale or future-dated
//! messages are refused.
//!
//! Attacks pinned here: reading another's message, altering, replaying, back- or forward-dating one
//! (`altered_replayed_stale…`); claiming another sender's message id first (`one_senders_message_id…`);
//! flooding the replay cache from throwaway identities (`a_flood_from_throwaway_identities…`). In
//! `src/sealed.rs`: a forged sender inside a valid seal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kai_klp::sealed::{Envelope, Mailbox, MessageKind, Sealed, seal};
use kai_klp::{Error, Identity};
use serde_json::json;

#[test]
fn only_the_recipient_opens_and_the_sender_is_proven() {
    let (alice, bob, carol) = (Identity::generate(), Identity::generate(), Identity::generate());
    let envelope = Envelope::new(
        &alice,
        &bob.did(),
        MessageKind::CallRequest,
        json!({"input": "What is 2 + 3?"}),
    );
    let sealed = seal(&alice, &envelope).unwrap();
    let wire = serde_json::to_string(&sealed).unwrap();
    assert!(!wire.contains("2 + 3"), "the body is not readable on the wire");

    let opened = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()))
        .open(&serde_json::from_str::<Sealed>(&wire).unwrap())
        .unwrap();
    assert_eq!(opened, envelope);
    assert_eq!(opened.from, alice.did());
    assert!(matches!(
        Mailbox::new(carol).open(&sealed),
        Err(Error::MessageRejected { .. })
    ));
}

#[test]
fn altered_replayed_stale_and_future_messages_are_refused() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let envelope = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!("hello"));
    let sealed = seal(&alice, &envelope).unwrap();
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()));

    let mut altered = sealed.clone();
    let mut ct = URL_SAFE_NO_PAD.decode(&altered.ct).unwrap();
    ct[5] ^= 1;
    altered.ct = URL_SAFE_NO_PAD.encode(ct);
    assert!(matches!(mailbox.open(&altered), Err(Error::MessageRejected { .. })));

    mailbox.open(&sealed).unwrap();
    assert!(matches!(mailbox.open(&sealed), Err(Error::Replayed)));

    let mut old = Envelope::new(&alice, &bob.did(), MessageKind::StatusPing, json!(null));
    old.created -= 3600;
    assert!(
        matches!(mailbox.open(&seal(&alice, &old).unwrap()), Err(Error::MessageRejected { reason }) if reason.contains("older"))
    );
    let mut future = Envelope::new(&alice, &bob.did(), MessageKind::StatusPing, json!(null));
    future.created += 3600;
    assert!(
        matches!(mailbox.open(&seal(&alice, &future).unwrap()), Err(Error::MessageRejected { reason }) if reason.contains("future"))
    );

    let garbage = Sealed {
        v: 1,
        enc: "AAAA".into(),
        ct: "!!!".into(),
    };
    assert!(matches!(mailbox.open(&garbage), Err(Error::MessageRejected { .. })));
    let huge = Sealed {
        v: 1,
        enc: sealed.enc.clone(),
        ct: "A".repeat(2 * 1024 * 1024),
    };
    assert!(matches!(mailbox.open(&huge), Err(Error::MessageRejected { reason }) if reason.contains("too large")));
}

#[test]
fn messages_delivered_out_of_their_senders_order_are_marked_late() {
    use kai_klp::sealed::Order;
    let (alice, carol, bob) = (Identity::generate(), Identity::generate(), Identity::generate());
    let written: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!(i)))
        .collect();
    assert!(
        written.windows(2).all(|w| w[0].seq < w[1].seq),
        "each envelope is numbered above the last"
    );
    let sealed: Vec<Sealed> = written.iter().map(|e| seal(&alice, e).unwrap()).collect();
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()));

    // Delivered 1, 0, 2: message 0 is late, behind message 1.
    assert_eq!(mailbox.open_ordered(&sealed[1]).unwrap().1, Order::InOrder);
    let (opened, order) = mailbox.open_ordered(&sealed[0]).unwrap();
    assert_eq!((opened.body, order), (json!(0), Order::Late { latest: written[1].seq }));
    assert_eq!(mailbox.open_ordered(&sealed[2]).unwrap().1, Order::InOrder);
    // Each sender has its own order; a late message is still refused if replayed.
    let from_carol = seal(
        &carol,
        &Envelope::new(&carol, &bob.did(), MessageKind::Direct, json!("hi")),
    )
    .unwrap();
    assert_eq!(mailbox.open_ordered(&from_carol).unwrap().1, Order::InOrder);
    assert!(matches!(mailbox.open_ordered(&sealed[0]), Err(Error::Replayed)));
}

/// A message between 64 KiB and the sealed-message limit opens (it used to be sealed and sent, then
/// refused by the recipient as an over-long token), and one over the limit is refused when sealing.
#[test]
fn what_can_be_sealed_can_be_opened() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()));
    let big = "x".repeat(200 * 1024);
    let envelope = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!({"text": big}));
    let opened = mailbox.open(&seal(&alice, &envelope).unwrap()).unwrap();
    assert_eq!(opened.body["text"].as_str().map(str::len), Some(200 * 1024));
    let huge = "x".repeat(kai_klp::sealed::MAX_SEALED_BYTES);
    let envelope = Envelope::new(&alice, &bob.did(), MessageKind::Direct, json!({"text": huge}));
    assert!(matches!(seal(&alice, &envelope), Err(Error::MessageRejected { .. })));
}

fn sealed_from(sender: &Identity, to: &Identity, id: Option<&str>, created: u64) -> Sealed {
    let mut envelope = Envelope::new(sender, &to.did(), MessageKind::Direct, json!("hi"));
    if let Some(id) = id {
        envelope.id = id.to_owned();
    }
    envelope.created = created;
    seal(sender, &envelope).unwrap()
}

/// Mallory learned the id of a message Alice will send (or guessed it) and sends her own first: ids
/// are remembered per sender, so Alice's message still opens.
#[test]
fn one_senders_message_id_does_not_block_anothers() {
    let (alice, bob, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes()));
    let now = 1_800_000_000;
    mailbox
        .open_at(&sealed_from(&mallory, &bob, Some("alice-1"), now), now)
        .unwrap();
    mailbox
        .open_at(&sealed_from(&alice, &bob, Some("alice-1"), now), now)
        .unwrap();
    assert!(matches!(
        mailbox.open_at(&sealed_from(&alice, &bob, Some("alice-1"), now), now),
        Err(Error::Replayed)
    ));
}

/// Anyone can mint identities and seal to Bob. A flood from throwaway identities fills at most half
/// the replay cache, each identity at most a hundredth; Bob's known contacts still get through, each up
/// to a tenth, and room comes back as the flood leaves the window.
#[test]
fn a_flood_from_throwaway_identities_cannot_shut_out_a_known_sender() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let mut mailbox = Mailbox::new(Identity::from_secret_bytes(&bob.secret_bytes())).with_capacity(200);
    mailbox.know(alice.did());
    let now = 1_800_000_000;
    let spammer = Identity::generate();
    mailbox.open_at(&sealed_from(&spammer, &bob, None, now), now).unwrap();
    mailbox.open_at(&sealed_from(&spammer, &bob, None, now), now).unwrap();
    let Err(Error::MessageRejected { reason }) = mailbox.open_at(&sealed_from(&spammer, &bob, None, now), now) else {
        panic!("a third message from one unknown sender took a slot");
    };
    assert!(reason.contains("from this sender"), "{reason}");
    let mut refused = 0;
    for _ in 0..120 {
        if mailbox
            .open_at(&sealed_from(&Identity::generate(), &bob, None, now), now)
            .is_err()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 120 - 98, "unknown senders share half of the 200 slots");
    for _ in 0..20 {
        mailbox.open_at(&sealed_from(&alice, &bob, None, now), now).unwrap();
    }
    let Err(Error::MessageRejected { reason }) = mailbox.open_at(&sealed_from(&alice, &bob, None, now), now) else {
        panic!("one known sender took more than a tenth");
    };
    assert!(reason.contains("from this sender"), "{reason}");
    // Five minutes later the flood has left the window.
    let later = now + 301;
    mailbox
        .open_at(&sealed_from(&Identity::generate(), &bob, None, later), later)
        .unwrap();
}
