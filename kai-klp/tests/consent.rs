//! Consent tokens: issuing, delegating, and every rejection, each with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, tool_fn};
use kai_klp::consent::{self, issue_at, token_id};
use kai_klp::{Capability, ConsentHook, Error, Identity, Verifier};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);

struct World {
    service: Identity,
    alice: Identity,
    bob: Identity,
    verifier: Verifier,
}

fn world() -> World {
    let service = Identity::generate();
    let verifier = Verifier::new(service.did(), [service.did()]);
    World {
        alice: Identity::generate(),
        bob: Identity::generate(),
        service,
        verifier,
    }
}

fn search() -> Capability {
    Capability::call_tool("web_search")
}

#[test]
fn a_root_grant_authorizes_what_it_names_and_nothing_else() {
    let w = world();
    // The service grants Alice; Alice invokes the service with a token addressed to it, proven by the grant.
    let grant = issue_at(&w.service, &w.alice.did(), &[search()], NOW, HOUR, &[]).unwrap();
    let invocation = issue_at(&w.alice, &w.service.did(), &[search()], NOW, HOUR / 2, &[grant]).unwrap();
    let claims = w.verifier.authorize_at(&invocation, &search(), NOW + 10).unwrap();
    assert_eq!(claims.iss, w.alice.did());
    let other = Capability::call_tool("delete_files");
    assert!(matches!(
        w.verifier.authorize_at(&invocation, &other, NOW),
        Err(Error::NotGranted { .. })
    ));
}

#[test]
fn time_bounds_with_clock_skew() {
    let w = world();
    let direct = consent::issue_window(&w.service, &w.service.did(), &[search()], NOW, NOW + 3600, &[]).unwrap();
    assert!(
        w.verifier.authorize_at(&direct, &search(), NOW - 30).is_ok(),
        "within the 60 s skew"
    );
    assert!(matches!(
        w.verifier.authorize_at(&direct, &search(), NOW - 120),
        Err(Error::NotYetValid { .. })
    ));
    assert!(
        w.verifier.authorize_at(&direct, &search(), NOW + 3600 + 30).is_ok(),
        "within the skew"
    );
    assert!(matches!(
        w.verifier.authorize_at(&direct, &search(), NOW + 3600 + 120),
        Err(Error::Expired { expired_at }) if expired_at == NOW + 3600
    ));
}

#[test]
fn the_wrong_audience_and_untrusted_roots_are_refused() {
    let w = world();
    let for_bob = issue_at(&w.service, &w.bob.did(), &[search()], NOW, HOUR, &[]).unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&for_bob, &search(), NOW),
        Err(Error::WrongAudience { .. })
    ));
    let self_made = issue_at(&w.alice, &w.service.did(), &[search()], NOW, HOUR, &[]).unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&self_made, &search(), NOW),
        Err(Error::UntrustedRoot { .. })
    ));
}

#[test]
fn a_tampered_token_has_a_bad_signature() {
    let w = world();
    let token = issue_at(&w.service, &w.service.did(), &[search()], NOW, HOUR, &[]).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(NOW + 10 * 3600);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert!(matches!(
        w.verifier.authorize_at(&forged, &search(), NOW),
        Err(Error::BadSignature)
    ));
    assert!(matches!(
        w.verifier.authorize_at("not.a.token", &search(), NOW),
        Err(Error::TokenMalformed { .. })
    ));
}

#[test]
fn delegation_can_narrow_but_never_widen() {
    let w = world();
    let any_tool = Capability::new("tool:*", "tool/call");
    let to_alice = issue_at(
        &w.service,
        &w.alice.did(),
        std::slice::from_ref(&any_tool),
        NOW,
        HOUR,
        &[],
    )
    .unwrap();
    // Alice narrows to one tool and half the time for Bob; Bob invokes the service.
    let to_bob = issue_at(
        &w.alice,
        &w.bob.did(),
        &[search()],
        NOW,
        HOUR / 2,
        std::slice::from_ref(&to_alice),
    )
    .unwrap();
    let invocation = issue_at(
        &w.bob,
        &w.service.did(),
        &[search()],
        NOW,
        HOUR / 4,
        std::slice::from_ref(&to_bob),
    )
    .unwrap();
    w.verifier.authorize_at(&invocation, &search(), NOW + 60).unwrap();

    // Bob claims every tool, though Alice gave him one.
    let wider = issue_at(
        &w.bob,
        &w.service.did(),
        &[any_tool],
        NOW,
        HOUR / 4,
        std::slice::from_ref(&to_bob),
    )
    .unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&wider, &search(), NOW),
        Err(Error::Escalation { .. })
    ));
    // Bob claims more time than Alice gave him.
    let longer = issue_at(
        &w.bob,
        &w.service.did(),
        &[search()],
        NOW,
        HOUR,
        std::slice::from_ref(&to_bob),
    )
    .unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&longer, &search(), NOW),
        Err(Error::Escalation { .. })
    ));
    // Alice's grant, presented by Bob as his proof: it was issued to Alice, not to Bob.
    let stolen = issue_at(&w.bob, &w.service.did(), &[search()], NOW, HOUR / 4, &[to_alice]).unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&stolen, &search(), NOW),
        Err(Error::BrokenChain { .. })
    ));
}

#[test]
fn revoking_a_link_revokes_everything_below_it() {
    let w = world();
    let to_alice = issue_at(&w.service, &w.alice.did(), &[search()], NOW, HOUR, &[]).unwrap();
    let invocation = issue_at(
        &w.alice,
        &w.service.did(),
        &[search()],
        NOW,
        HOUR,
        std::slice::from_ref(&to_alice),
    )
    .unwrap();
    w.verifier.authorize_at(&invocation, &search(), NOW).unwrap();
    w.verifier.revoke(token_id(&to_alice));
    assert!(matches!(
        w.verifier.authorize_at(&invocation, &search(), NOW),
        Err(Error::Revoked { .. })
    ));
}

#[test]
fn a_token_is_admitted_once() {
    let w = world();
    let token = issue_at(&w.service, &w.service.did(), &[search()], NOW, HOUR, &[]).unwrap();
    w.verifier.admit_at(&token, NOW).unwrap();
    assert!(matches!(w.verifier.admit_at(&token, NOW + 1), Err(Error::Replayed)));
    // Checking a grant for a tool call does not consume the nonce.
    w.verifier.authorize_at(&token, &search(), NOW + 2).unwrap();
}

#[test]
fn chains_are_bounded_in_depth() {
    let w = world();
    let mut holders: Vec<Identity> = (0..consent::MAX_CHAIN_DEPTH + 1)
        .map(|_| Identity::generate())
        .collect();
    holders.insert(0, Identity::from_secret_bytes(&w.service.secret_bytes()));
    let mut token = issue_at(&holders[0], &holders[1].did(), &[search()], NOW, HOUR, &[]).unwrap();
    for pair in holders[1..].windows(2) {
        token = issue_at(&pair[0], &pair[1].did(), &[search()], NOW, HOUR, &[token]).unwrap();
    }
    let last = holders.last().unwrap();
    let invocation = issue_at(last, &w.service.did(), &[search()], NOW, HOUR, &[token]).unwrap();
    assert!(matches!(
        w.verifier.authorize_at(&invocation, &search(), NOW),
        Err(Error::ChainTooDeep { max }) if max == consent::MAX_CHAIN_DEPTH
    ));
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

#[test]
fn the_consent_hook_lets_through_only_granted_tools() {
    let w = world();
    let verifier = Arc::new(Verifier::new(w.service.did(), [w.service.did()]));
    let to_alice = consent::issue(&w.service, &w.alice.did(), &[search()], HOUR, &[]).unwrap();
    let token = consent::issue(&w.alice, &w.service.did(), &[search()], HOUR, &[to_alice]).unwrap();
    verifier.admit(&token).unwrap();

    let model = ScriptedModel::new()
        .tool_calls([("web_search", json!({"q": "kai"})), ("delete_files", json!({"q": "/"}))])
        .text("done");
    let agent = Agent::builder(model)
        .tool(tool_fn("web_search", "Search.", |x: Query| async move {
            Ok(format!("results for {}", x.q))
        }))
        .tool(tool_fn(
            "delete_files",
            "Delete.",
            |_: Query| async move { Ok("deleted") },
        ))
        .hook(ConsentHook::new(verifier, token))
        .build()
        .unwrap();
    let output = futures::executor::block_on(agent.run("go")).unwrap();
    let results: Vec<_> = output.messages.iter().flat_map(|m| m.tool_results()).collect();
    assert_eq!(results[0].content, "results for kai");
    assert!(results[1].is_error);
    assert!(results[1].content.contains("no consent"), "{}", results[1].content);
}
