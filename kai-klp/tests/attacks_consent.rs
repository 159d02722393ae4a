//! Attacks on consent, each pinned by a test that fails without its defence: a token presented by
//! someone other than its issuer (bearer use, a delegation lifted out of a chain), an invocation reused
//! as a proof or for another request, a replay-cache flood, a resource wildcard that spills into
//! another tool, a delegation that drops a caveat, a caveat the server cannot enforce, and hostile DIDs
//! (huge, non-canonical).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::executor::block_on;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_klp::calls::{invoke_capability, serve};
use kai_klp::consent::{self, invoke_at, issue_at};
use kai_klp::sealed::{Envelope, MessageKind};
use kai_klp::session::{accept, connect, memory_pair};
use kai_klp::{Capability, Did, Error, Identity, Verifier};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn copy(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.secret_bytes())
}

fn wipe() -> Capability {
    Capability::call_tool("wipe")
}

/// Bob serves an agent whose model calls `wipe` on any request; `presenter` opens a session to Bob and
/// sends one call request carrying `token` (made for the request id it is given). Returns Bob's reply
/// and whether `wipe` ran.
fn present(
    bob: &Identity,
    verifier: Verifier,
    presenter: &Identity,
    token: impl FnOnce(&str) -> String,
) -> (serde_json::Value, bool) {
    present_call(bob, verifier, presenter, json!({}), token)
}

/// [`present`], where the model calls `wipe` with `arguments`.
fn present_call(
    bob: &Identity,
    verifier: Verifier,
    presenter: &Identity,
    arguments: serde_json::Value,
    token: impl FnOnce(&str) -> String,
) -> (serde_json::Value, bool) {
    let wiped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&wiped);
    let agent = Agent::builder(ScriptedModel::new().tool_call("wipe", arguments).text("wiped"))
        .tool(tool_fn("wipe", "Wipes everything.", move |_: serde_json::Value| {
            let flag = Arc::clone(&flag);
            async move {
                flag.store(true, Ordering::SeqCst);
                Ok("wiped")
            }
        }))
        .build()
        .unwrap();
    let verifier = Arc::new(verifier);
    let (a, b) = memory_pair();
    let bob_did = bob.did();
    let (client, server) =
        block_on(async { futures::join!(connect(copy(presenter), Some(&bob_did), a), accept(copy(bob), b)) });
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let reply = block_on(async {
        let serving = serve(&agent, bob, &mut server, &verifier);
        let calling = async move {
            let mut request = Envelope::new(
                presenter,
                &bob_did,
                MessageKind::CallRequest,
                json!({"input": "wipe it"}),
            );
            request.body["token"] = json!(token(&request.id));
            client.send(&request).await.unwrap();
            let reply = client.recv().await.unwrap();
            drop(client);
            reply.body
        };
        let (served, reply) = futures::join!(serving, calling);
        served.unwrap();
        reply
    });
    (reply, wiped.load(Ordering::SeqCst))
}

fn grant_for(bob: &Identity, holder: &Did) -> String {
    let granted = [invoke_capability(&bob.did()), wipe()];
    consent::issue(bob, holder, &granted, HOUR, &[]).unwrap()
}

#[test]
fn the_issuer_itself_gets_its_call_answered() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let grant = grant_for(&bob, &alice.did());
    let granted = [invoke_capability(&bob.did()), wipe()];
    let (reply, wiped) = present(&bob, Verifier::new(bob.did(), [bob.did()]), &alice, |request| {
        consent::invoke(&alice, &bob.did(), &granted, MINUTE, &[grant], request).unwrap()
    });
    assert_eq!(reply["answer"], "wiped", "{reply}");
    assert!(wiped);
}

/// Mallory got hold of Alice's invocation (a log, a proxy): presented over Mallory's own session, it
/// grants nothing. Without the binding to the session's peer, the token was a bearer credential.
#[test]
fn someone_elses_invocation_is_not_a_bearer_credential() {
    let (alice, bob, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
    let grant = grant_for(&bob, &alice.did());
    let granted = [invoke_capability(&bob.did()), wipe()];
    let (reply, wiped) = present(&bob, Verifier::new(bob.did(), [bob.did()]), &mallory, |request| {
        consent::invoke(&alice, &bob.did(), &granted, MINUTE, &[grant], request).unwrap()
    });
    assert!(!wiped);
    assert_eq!(reply["error"]["kind"], "wrong_invoker", "{reply}");
}

/// Alice delegated to Bob (the server) so Bob could act for her, and Bob passed that on to Dave inside
/// a chain. Dave lifts Alice's delegation out of the chain and presents it as his own call: refused,
/// as it is neither Dave's nor an invocation.
#[test]
fn a_delegation_lifted_out_of_a_chain_is_not_an_invocation() {
    let (alice, bob, dave) = (Identity::generate(), Identity::generate(), Identity::generate());
    let grant = grant_for(&bob, &alice.did());
    let granted = [invoke_capability(&bob.did()), wipe()];
    let to_bob = consent::issue(&alice, &bob.did(), &granted, HOUR, &[grant]).unwrap();
    let to_dave = consent::issue(&bob, &dave.did(), &granted, HOUR, std::slice::from_ref(&to_bob)).unwrap();
    let lifted = consent::Verifier::new(dave.did(), [bob.did()])
        .admit(&to_dave)
        .unwrap()
        .prf;
    assert_eq!(lifted, std::slice::from_ref(&to_bob));
    let (reply, wiped) = present(&bob, Verifier::new(bob.did(), [bob.did()]), &dave, |_| to_bob.clone());
    assert!(!wiped);
    assert_eq!(reply["error"]["kind"], "wrong_invoker", "{reply}");
    // Even presented by its own issuer, a delegation is not an invocation.
    let verifier = Verifier::new(bob.did(), [bob.did()]);
    let error = verifier
        .admit_invocation(&to_bob, &alice.did(), "req-1", &invoke_capability(&bob.did()))
        .unwrap_err();
    assert!(matches!(error, Error::NotAnInvocation { .. }), "{error:?}");
}

#[test]
fn an_invocation_binds_one_request_and_is_never_a_proof() {
    let (alice, bob, carol) = (Identity::generate(), Identity::generate(), Identity::generate());
    let verifier = Verifier::new(bob.did(), [bob.did()]);
    let granted = [invoke_capability(&bob.did()), wipe()];
    let grant = issue_at(&bob, &alice.did(), &granted, NOW, HOUR, &[]).unwrap();
    let invocation = invoke_at(
        &alice,
        &bob.did(),
        &granted,
        NOW,
        MINUTE,
        std::slice::from_ref(&grant),
        "req-1",
    )
    .unwrap();
    // Another request cannot ride on it.
    assert!(matches!(
        verifier.admit_invocation_at(&invocation, &alice.did(), "req-2", &invoke_capability(&bob.did()), NOW),
        Err(Error::NotAnInvocation { .. })
    ));
    assert!(
        verifier
            .admit_invocation_at(&invocation, &alice.did(), "req-1", &invoke_capability(&bob.did()), NOW)
            .is_ok()
    );
    // An invocation handed on as a proof grants nothing further down.
    let onward = issue_at(&bob, &carol.did(), &granted, NOW, HOUR / 2, &[invocation]).unwrap();
    assert!(matches!(
        Verifier::new(carol.did(), [bob.did()]).admit_at(&onward, NOW),
        Err(Error::NotAnInvocation { .. })
    ));
}

/// A flood of fresh tokens must not push a live nonce out of the replay cache (its token could then be
/// replayed): the cache refuses new tokens instead.
#[test]
fn a_flooded_replay_cache_refuses_rather_than_forgets() {
    let service = Identity::generate();
    let verifier = Verifier::new(service.did(), [service.did()]).with_replay_capacity(3);
    let token = |ttl| issue_at(&service, &service.did(), &[wipe()], NOW, ttl, &[]).unwrap();
    let victim = token(HOUR);
    verifier.admit_at(&victim, NOW).unwrap();
    verifier.admit_at(&token(HOUR), NOW).unwrap();
    verifier.admit_at(&token(HOUR), NOW).unwrap();
    assert!(matches!(
        verifier.admit_at(&token(HOUR), NOW),
        Err(Error::ReplayCacheFull { .. })
    ));
    assert!(
        matches!(verifier.admit_at(&victim, NOW), Err(Error::Replayed)),
        "the victim is still remembered"
    );
}

/// A DID arrives before any signature is checked; a huge one must be refused without decoding it
/// (base58 decoding is quadratic: 48,000 digits took half a second of CPU).
#[test]
fn a_huge_did_is_refused_before_decoding() {
    let huge = format!("did:key:z{}", "2".repeat(48_000));
    let started = std::time::Instant::now();
    let error = huge.parse::<Did>().unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(50), "{:?}", started.elapsed());
    assert!(error.to_string().contains("47 base58 digits"), "{error}");
}

/// RFC 8032 refuses an encoding with y >= p; accepting it would give one key a second DID.
#[test]
fn a_non_canonical_key_encoding_is_not_a_did() {
    // p = 2^255 - 19; y + p (y < 19) spells the point with y again, if that y is on the curve.
    let mut refused = 0;
    for y in 2u8..19 {
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xed + y; // p's low byte is 0xed
        bytes[31] = 0x7f;
        if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok_and(|key| !key.is_weak()) {
            assert!(Did::from_public_bytes(&bytes).is_err(), "y = {y}");
            refused += 1;
        }
    }
    assert!(refused > 0, "some y below 19 is on the curve");
}

/// One grantee floods the server with invocations of its own: it fills its grant's share of the replay
/// cache and then waits, while callers under other grants are still served. Tokens that fail a check
/// (an empty grant) or live long (an hour) never take a slot.
#[test]
fn one_grantee_cannot_lock_everyone_out_of_the_replay_cache() {
    let (bob, alice, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
    let verifier = Verifier::new(bob.did(), [bob.did()])
        .with_replay_capacity(1000)
        .with_per_grant_limit(3);
    let call = invoke_capability(&bob.did());
    let granted = [call.clone(), wipe()];
    let grant = |to: &Identity| issue_at(&bob, &to.did(), &granted, NOW, HOUR, &[]).unwrap();
    let (mallory_grant, alice_grant) = (grant(&mallory), grant(&alice));
    let invocation = |who: &Identity, proof: &String, caps: &[Capability], ttl, id: &str| {
        invoke_at(who, &bob.did(), caps, NOW, ttl, std::slice::from_ref(proof), id).unwrap()
    };
    // Refused before the cache: it lives an hour, or grants nothing of use.
    let long = invocation(&mallory, &mallory_grant, &granted, HOUR, "r");
    assert!(matches!(
        verifier.admit_invocation_at(&long, &mallory.did(), "r", &call, NOW),
        Err(Error::NotAnInvocation { .. })
    ));
    for n in 0..50 {
        let empty = invocation(&mallory, &mallory_grant, &[], MINUTE, &format!("e{n}"));
        let refused = verifier.admit_invocation_at(&empty, &mallory.did(), &format!("e{n}"), &call, NOW);
        assert!(matches!(refused, Err(Error::NotGranted { .. })));
    }
    for n in 0..3 {
        let flood = invocation(&mallory, &mallory_grant, &granted, MINUTE, &format!("f{n}"));
        verifier
            .admit_invocation_at(&flood, &mallory.did(), &format!("f{n}"), &call, NOW)
            .unwrap();
    }
    let more = invocation(&mallory, &mallory_grant, &granted, MINUTE, "f3");
    assert!(matches!(
        verifier.admit_invocation_at(&more, &mallory.did(), "f3", &call, NOW),
        Err(Error::GrantBusy { limit: 3 })
    ));
    // Delegating to a sock puppet does not give Mallory a fresh share: the grant is the same.
    let puppet = Identity::generate();
    let to_puppet = issue_at(
        &mallory,
        &puppet.did(),
        &granted,
        NOW,
        HOUR,
        std::slice::from_ref(&mallory_grant),
    )
    .unwrap();
    let sock = invocation(&puppet, &to_puppet, &granted, MINUTE, "s");
    assert!(matches!(
        verifier.admit_invocation_at(&sock, &puppet.did(), "s", &call, NOW),
        Err(Error::GrantBusy { .. })
    ));
    let honest = invocation(&alice, &alice_grant, &granted, MINUTE, "a");
    verifier
        .admit_invocation_at(&honest, &alice.did(), "a", &call, NOW)
        .unwrap();
}

/// Mallory holds her own grant and a delegation from Alice's. Listing Alice's chain first must not let
/// her spend only Alice's share, nor get a fresh share once hers is spent: every grant a token comes
/// from is charged.
#[test]
fn every_grant_behind_a_token_is_charged() {
    let (bob, alice, mallory) = (Identity::generate(), Identity::generate(), Identity::generate());
    let verifier = Verifier::new(bob.did(), [bob.did()])
        .with_replay_capacity(1000)
        .with_per_grant_limit(2);
    let call = invoke_capability(&bob.did());
    let granted = [call.clone(), wipe()];
    let alices = issue_at(&bob, &alice.did(), &granted, NOW, HOUR, &[]).unwrap();
    let to_mallory = issue_at(
        &alice,
        &mallory.did(),
        &granted,
        NOW,
        HOUR,
        std::slice::from_ref(&alices),
    )
    .unwrap();
    let mallorys = issue_at(&bob, &mallory.did(), &granted, NOW, HOUR, &[]).unwrap();
    let invoke =
        |proofs: &[String], id: &str| invoke_at(&mallory, &bob.did(), &granted, NOW, MINUTE, proofs, id).unwrap();
    for n in 0..2 {
        let both = invoke(&[to_mallory.clone(), mallorys.clone()], &format!("m{n}"));
        verifier
            .admit_invocation_at(&both, &mallory.did(), &format!("m{n}"), &call, NOW)
            .unwrap();
    }
    // Her own grant is spent too: no fresh share by putting it alone.
    let own = invoke(std::slice::from_ref(&mallorys), "m2");
    assert!(matches!(
        verifier.admit_invocation_at(&own, &mallory.did(), "m2", &call, NOW),
        Err(Error::GrantBusy { .. })
    ));
}

fn only_tmp() -> Capability {
    wipe().with_caveat(consent::ARGUMENTS_CAVEAT, json!({"dir": "tmp"}))
}

/// Bob let Alice wipe only `tmp`. Her invocation claims plain `wipe`: dropping the caveat is an
/// escalation, refused before the agent runs. (When caveats were kept but ignored, this wiped all.)
#[test]
fn a_delegation_that_drops_a_caveat_is_refused() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let grant = consent::issue(
        &bob,
        &alice.did(),
        &[invoke_capability(&bob.did()), only_tmp()],
        HOUR,
        &[],
    )
    .unwrap();
    let (reply, wiped) = present_call(
        &bob,
        Verifier::new(bob.did(), [bob.did()]),
        &alice,
        json!({"dir": "/"}),
        |request| {
            let widened = [invoke_capability(&bob.did()), wipe()];
            consent::invoke(&alice, &bob.did(), &widened, MINUTE, &[grant], request).unwrap()
        },
    );
    assert!(!wiped);
    assert_eq!(reply["error"]["kind"], "escalation", "{reply}");
}

/// Keeping the caveat, Alice's call runs only with the arguments it names.
#[test]
fn the_arguments_caveat_limits_what_a_tool_is_called_with() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let granted = [invoke_capability(&bob.did()), only_tmp()];
    for (arguments, allowed) in [
        (json!({"dir": "/"}), false),
        (json!({}), false),
        (json!({"dir": "tmp", "force": true}), true),
    ] {
        let grant = consent::issue(&bob, &alice.did(), &granted, HOUR, &[]).unwrap();
        let (reply, wiped) = present_call(
            &bob,
            Verifier::new(bob.did(), [bob.did()]),
            &alice,
            arguments.clone(),
            |request| consent::invoke(&alice, &bob.did(), &granted, MINUTE, &[grant], request).unwrap(),
        );
        assert_eq!(wiped, allowed, "{arguments}: {reply}");
    }
}

/// A caveat Bob's verifier does not know (`max_calls`) refuses, on the agent as on a tool: ignoring
/// it would grant more than the issuer meant.
#[test]
fn a_caveat_the_server_cannot_enforce_refuses_the_call() {
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let once = |capability: Capability| capability.with_caveat("max_calls", json!(1));
    let on_agent = [once(invoke_capability(&bob.did())), wipe()];
    let grant = consent::issue(&bob, &alice.did(), &on_agent, HOUR, &[]).unwrap();
    let (reply, wiped) = present(&bob, Verifier::new(bob.did(), [bob.did()]), &alice, |request| {
        consent::invoke(&alice, &bob.did(), &on_agent, MINUTE, &[grant], request).unwrap()
    });
    assert!(!wiped);
    assert_eq!(reply["error"]["kind"], "unknown_caveat", "{reply}");

    let on_tool = [invoke_capability(&bob.did()), once(wipe())];
    let grant = consent::issue(&bob, &alice.did(), &on_tool, HOUR, &[]).unwrap();
    let verifier = Verifier::new(bob.did(), [bob.did()]);
    let invocation = consent::invoke(&alice, &bob.did(), &on_tool, MINUTE, &[grant], "req-1").unwrap();
    let error = verifier.authorize(&invocation, &wipe()).unwrap_err();
    assert!(
        matches!(&error, Error::UnknownCaveat { caveat, .. } if caveat == "max_calls"),
        "{error:?}"
    );
    let (_, wiped) = present(&bob, verifier, &alice, |request| {
        let grant = consent::issue(&bob, &alice.did(), &on_tool, HOUR, &[]).unwrap();
        consent::invoke(&alice, &bob.did(), &on_tool, MINUTE, &[grant], request).unwrap()
    });
    assert!(!wiped, "the tool ran under a caveat nobody enforced");
}

/// Abilities must be namespaced (UCAN 0.8.1): a token granting a bare `call` is refused, when issued and
/// when presented.
#[test]
fn an_unnamespaced_ability_is_not_a_capability() {
    let bob = Identity::generate();
    let bare = Capability::new("tool:wipe", "call");
    assert!(matches!(
        consent::issue(&bob, &bob.did(), &[bare], HOUR, &[]),
        Err(Error::InvalidCapability { .. })
    ));
}

/// Bob's server restarts. A token it admitted before (a delegation, valid for an hour) is presented
/// again: with a replay file the restarted verifier still refuses it; a verifier with memory alone would
/// take it again.
#[test]
fn a_restart_does_not_forget_an_admitted_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay");
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let grant = grant_for(&bob, &alice.did());
    let token = consent::issue(&alice, &bob.did(), &[wipe()], HOUR, &[grant]).unwrap();
    let verifier = Verifier::new(bob.did(), [bob.did()]).with_replay_file(&path).unwrap();
    verifier.admit(&token).unwrap();
    assert!(
        matches!(
            Verifier::new(bob.did(), [bob.did()]).with_replay_file(&path),
            Err(Error::Io(_))
        ),
        "a second verifier wrote the same file"
    );
    drop(verifier);
    let restarted = Verifier::new(bob.did(), [bob.did()]).with_replay_file(&path).unwrap();
    assert!(matches!(restarted.admit(&token), Err(Error::Replayed)));
    // What the file prevents.
    assert!(Verifier::new(bob.did(), [bob.did()]).admit(&token).is_ok());
}
