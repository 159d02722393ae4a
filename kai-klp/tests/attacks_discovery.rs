//! Attacks on discovery, each pinned by a test that fails without its defence: a flood of records for
//! throwaway identities relayed into a full directory (pushing out the records of known agents, of this
//! node's own knowledge, or of quiet relays), one relay filling the directory, an older record replayed
//! over a newer one, and a record signed by someone other than the agent it names. (The per-peer gossip
//! budget, which needs the libp2p node's state, is tested in `src/discovery.rs`; records with a forged
//! length of validity in `src/presence.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kai_klp::presence::{Directory, Presence};
use kai_klp::{Capability, Did, Error, Identity};

/// A record for `identity` with these sequence number and validity window, signed by it.
fn signed(identity: &Identity, seq: u64, iat: u64, exp: u64) -> String {
    Presence {
        did: identity.did(),
        addrs: vec![format!("tcp://127.0.0.1:{seq}")],
        caps: vec![Capability::call_tool("weather")],
        seq,
        iat,
        exp,
    }
    .sign(identity)
    .unwrap()
}

#[test]
fn a_newer_record_replaces_an_older_one_and_a_replayed_older_one_does_not() {
    let bob = Identity::generate();
    let mut directory = Directory::new();
    let (old, new) = (signed(&bob, 1, 1000, 1300), signed(&bob, 2, 1100, 1400));
    assert!(directory.offer_at(&old, 1200).unwrap());
    assert!(directory.offer_at(&new, 1200).unwrap());
    assert!(!directory.offer_at(&old, 1200).unwrap());
    assert_eq!(directory.get_at(&bob.did(), 1200).unwrap().seq, 2);
    assert!(directory.get_at(&bob.did(), 1400).is_none());
}

/// Peers relay floods of throwaway identities into a full directory: the flooders' own records make
/// room, never those of known agents, of this node's own knowledge, or of a quiet relay's.
#[test]
fn a_full_directory_makes_room_from_the_heaviest_source() {
    let mut directory = Directory::with_capacity(6).with_per_source_limit(5);
    let offer = |directory: &mut Directory, source: Option<&str>, exp: u64, now: u64| -> (Did, bool) {
        let identity = Identity::generate();
        let token = signed(&identity, 1, 1000, exp);
        let kept = match source {
            Some(source) => directory.offer_from_at(&token, source, now).unwrap(),
            None => directory.offer_at(&token, now).unwrap(),
        };
        (identity.did(), kept)
    };
    let (own, _) = offer(&mut directory, None, 1500, 1000);
    let (quiet, _) = offer(&mut directory, Some("quiet"), 1500, 1000);
    let known = Identity::generate();
    directory.mark_known(known.did());
    assert!(
        directory
            .offer_from_at(&signed(&known, 1, 1000, 1500), "flood", 1000)
            .unwrap()
    );
    let mut flood = Vec::new();
    for n in 0..3 {
        flood.push(offer(&mut directory, Some("flood"), 1500, 1001 + n).0);
    }
    // The directory is full; newcomers from the flooder, then from another relay, push out the
    // flooder's oldest unknown records, one each.
    let (late, kept) = offer(&mut directory, Some("flood"), 1500, 1010);
    assert!(kept);
    assert!(
        directory.get_at(&flood[0], 1010).is_none(),
        "the flooder's oldest made room"
    );
    let (newcomer, kept) = offer(&mut directory, Some("other"), 1500, 1011);
    assert!(kept);
    for did in [own, quiet, known.did(), newcomer, late] {
        assert!(directory.get_at(&did, 1011).is_some());
    }
    let held = [own, quiet, known.did(), newcomer, late]
        .into_iter()
        .chain(flood)
        .filter(|did| directory.get_at(did, 1011).is_some())
        .count();
    assert_eq!(held, 6, "the directory stays at its capacity");
    // Later the records have expired and go first.
    let (fresh, kept) = offer(&mut directory, Some("flood"), 2000, 1600);
    assert!(kept && directory.get_at(&fresh, 1600).is_some());
}

/// One gossip peer relays records of many identities: it fills its share of the directory, no more.
#[test]
fn one_source_fills_at_most_its_share() {
    let mut directory = Directory::with_capacity(100).with_per_source_limit(3);
    let kept = (0..10)
        .filter(|_| {
            let identity = Identity::generate();
            directory
                .offer_from_at(&signed(&identity, 1, 1000, 1100), "peer-a", 1000)
                .unwrap()
        })
        .count();
    assert_eq!(kept, 3);
    let other = Identity::generate();
    assert!(
        directory
            .offer_from_at(&signed(&other, 1, 1000, 1100), "peer-b", 1000)
            .unwrap()
    );
}

/// Mallory cannot publish where Bob is: she cannot sign a record naming him, and one signed by her but
/// naming him is refused.
#[test]
fn a_record_naming_someone_else_is_refused() {
    let (bob, mallory) = (Identity::generate(), Identity::generate());
    let mut pretending = Presence::new(&mallory, ["tcp://10.0.0.1:1"], [], std::time::Duration::from_secs(60));
    pretending.did = bob.did();
    assert!(matches!(pretending.sign(&mallory), Err(Error::PresenceInvalid { .. })));
    let mut directory = Directory::new();
    assert!(directory.offer_at("not.a.token", 1000).is_err());
}
