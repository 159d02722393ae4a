"""KLP from Python: identities, consent tokens (interoperating with kAI in Rust), sealed messages, the
audit log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

import kai
from kai.klp import AuditLog, Identity, Mailbox, Verifier, issue_token, seal, verify_audit_log

KLP_TOKEN = os.environ.get("KAI_KLP_TOKEN", "")


def klp_token(*args: str) -> subprocess.CompletedProcess[str]:
    """The Rust example examples/klp_token.rs, which scripts/python-test.sh builds."""
    return subprocess.run([KLP_TOKEN, *args], capture_output=True, text=True, timeout=60)


def test_identities_sign_and_their_dids_verify() -> None:
    alice = Identity.generate()
    assert alice.did.startswith("did:key:z6Mk")
    signature = alice.sign(b"hello")
    kai.klp.verify_signature(alice.did, b"hello", signature)
    with pytest.raises(kai.KlpError):
        kai.klp.verify_signature(alice.did, b"hellO", signature)
    again = Identity.from_secret_bytes(alice.secret_bytes())
    assert again.did == alice.did
    assert kai.klp.did_document(alice.did)["id"] == alice.did
    with pytest.raises(kai.KlpError) as invalid:
        kai.klp.verify_signature("did:key:z" + "1" * 48000, b"x", signature)
    assert invalid.value.kind == "invalid_did"


def test_a_token_grants_what_it_names_and_nothing_else() -> None:
    owner, agent, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    token = issue_token(owner, agent.did, [("tool:search", "tool/call")], ttl=60)
    verifier = Verifier(agent.did, [owner.did])
    claims = verifier.authorize(token, "tool:search", "tool/call")
    assert claims["iss"] == owner.did and claims["aud"] == agent.did
    with pytest.raises(kai.ConsentError) as refused:
        verifier.authorize(token, "tool:delete", "tool/call")
    assert refused.value.kind == "not_granted" and isinstance(refused.value, kai.KlpError)
    with pytest.raises(kai.ConsentError) as untrusted:
        Verifier(agent.did, [stranger.did]).authorize(token, "tool:search", "tool/call")
    assert untrusted.value.kind == "untrusted_root"
    with pytest.raises(kai.ConsentError) as wrong:
        Verifier(stranger.did, [owner.did]).authorize(token, "tool:search", "tool/call")
    assert wrong.value.kind == "wrong_audience"
    verifier.revoke(token)
    with pytest.raises(kai.ConsentError) as revoked:
        verifier.authorize(token, "tool:search", "tool/call")
    assert revoked.value.kind == "revoked"


def test_an_invocation_is_bound_to_its_presenter_and_admitted_once() -> None:
    owner, agent, caller, thief = Identity.generate(), Identity.generate(), Identity.generate(), Identity.generate()
    grant = issue_token(owner, caller.did, [("tool:search", "tool/call")])
    invocation = kai.klp.invoke_token(caller, agent.did, [("tool:search", "tool/call")], "req-1", proofs=[grant])
    verifier = Verifier(agent.did, [owner.did])
    with pytest.raises(kai.ConsentError) as stolen:
        verifier.admit_invocation(invocation, thief.did, "req-1", "tool:search", "tool/call")
    assert stolen.value.kind == "wrong_invoker"
    verifier.admit_invocation(invocation, caller.did, "req-1", "tool:search", "tool/call")
    with pytest.raises(kai.ConsentError) as replayed:
        verifier.admit_invocation(invocation, caller.did, "req-1", "tool:search", "tool/call")
    assert replayed.value.kind == "replayed"


@pytest.mark.skipif(not KLP_TOKEN, reason="needs examples/klp_token.rs, built by scripts/python-test.sh")
def test_tokens_interoperate_with_kai_in_rust() -> None:
    owner, agent = Identity.generate(), Identity.generate()
    # Issued in Python, checked in Rust.
    token = issue_token(owner, agent.did, [("tool:search", "tool/call")])
    checked = klp_token("authorize", agent.did, owner.did, token, "tool:search", "tool/call")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["iss"] == owner.did
    refused = klp_token("authorize", agent.did, owner.did, token, "tool:delete", "tool/call")
    assert refused.returncode == 1 and refused.stderr.strip() == "not_granted"
    # Issued in Rust, checked in Python.
    issued = klp_token("issue", owner.secret_bytes().hex(), agent.did, "tool:search", "tool/call")
    assert issued.returncode == 0, issued.stderr
    claims = Verifier(agent.did, [owner.did]).authorize(issued.stdout.strip(), "tool:search", "tool/call")
    assert claims["iss"] == owner.did
    with pytest.raises(kai.ConsentError):
        Verifier(agent.did, [owner.did]).authorize(issued.stdout.strip(), "tool:search", "delete")


def test_sealed_messages_open_only_for_their_recipient_and_once() -> None:
    alice, bob, eve = Identity.generate(), Identity.generate(), Identity.generate()
    sealed = seal(alice, bob.did, {"text": "meet at noon", "n": [1, 2]})
    assert "noon" not in sealed
    bobs = Mailbox(bob)
    envelope = bobs.open(sealed)
    assert envelope["from"] == alice.did and envelope["body"] == {"text": "meet at noon", "n": [1, 2]}
    with pytest.raises(kai.KlpError):
        bobs.open(sealed)
    with pytest.raises(kai.KlpError):
        Mailbox(eve).open(seal(alice, bob.did, "private"))
    with pytest.raises(kai.KlpError) as garbage:
        bobs.open("{not json")
    assert garbage.value.kind == "message_rejected"


def test_a_replay_file_outlives_the_verifier(tmp_path: Path) -> None:
    owner, agent, caller = Identity.generate(), Identity.generate(), Identity.generate()
    grant = issue_token(owner, caller.did, [("tool:search", "tool/call")])
    invocation = kai.klp.invoke_token(caller, agent.did, [("tool:search", "tool/call")], "req-1", proofs=[grant])
    path = tmp_path / "replay"
    first = Verifier(agent.did, [owner.did], replay_file=path)
    first.admit_invocation(invocation, caller.did, "req-1", "tool:search", "tool/call")
    with pytest.raises(kai.KlpError):
        Verifier(agent.did, [owner.did], replay_file=path)
    del first
    restarted = Verifier(agent.did, [owner.did], replay_file=path)
    with pytest.raises(kai.ConsentError) as replayed:
        restarted.admit_invocation(invocation, caller.did, "req-1", "tool:search", "tool/call")
    assert replayed.value.kind == "replayed"


def test_a_known_sender_gets_through_a_mailbox() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    mailbox = Mailbox(bob)
    mailbox.know(alice.did)
    assert mailbox.open(seal(alice, bob.did, "hi"))["body"] == "hi"
    with pytest.raises(kai.KlpError):
        mailbox.know("did:web:example.com")


def test_the_audit_log_verifies_and_shows_tampering(tmp_path: Path) -> None:
    signer = Identity.generate()
    path = tmp_path / "audit.log"
    log = AuditLog(path, signer)
    heads: List[Dict[str, Any]] = [log.append("tool_call", {"tool": "search", "n": i}) for i in range(3)]
    assert heads[-1]["seq"] == 3 and log.head == heads[-1]
    assert verify_audit_log(path, signer.did, expected=heads[-1]) == heads[-1]
    del log
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    with pytest.raises(kai.KlpError) as invalid:
        verify_audit_log(path, signer.did)
    assert invalid.value.kind == "audit_invalid"


def test_an_identity_keeps_in_the_vault(tmp_path: Path) -> None:
    alice = Identity.generate()
    with kai.memory.Vault.create(tmp_path / "keys.vault", "pass", kdf={"alg": "pbkdf2-sha256", "iterations": 1000}) as vault:
        alice.store(vault, "alice")
        loaded = Identity.load(vault, "alice")
        assert loaded is not None and loaded.did == alice.did
        assert Identity.load(vault, "nobody") is None


def test_a_large_sealed_message_opens_and_a_revocation_list_names_token_ids() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    body = "x" * 700_000
    assert Mailbox(bob).open(seal(alice, bob.did, body))["body"] == body
    with pytest.raises(kai.KlpError) as huge:
        Mailbox(bob).open("x" * 3_000_000)
    assert huge.value.kind == "message_rejected"

    owner, agent = Identity.generate(), Identity.generate()
    token = issue_token(owner, agent.did, [("tool:search", "tool/call")])
    verifier = Verifier(agent.did, [owner.did])
    verifier.revoke_id(kai.klp.token_id(token))
    with pytest.raises(kai.ConsentError) as revoked:
        verifier.authorize(token, "tool:search", "tool/call")
    assert revoked.value.kind == "revoked"
