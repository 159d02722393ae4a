"""The Kind Link Protocol: identities named by ``did:key`` DIDs, consent tokens, sealed messages and a
signed audit log. Tokens and messages interoperate with kAI in Rust and every other binding."""

from kai._kai import (
    AuditLog,
    ConsentError,
    Identity,
    KlpError,
    Mailbox,
    Verifier,
    did_document,
    invoke_token,
    issue_token,
    seal,
    token_id,
    verify_audit_log,
    verify_signature,
)

__all__ = [
    "AuditLog",
    "ConsentError",
    "Identity",
    "KlpError",
    "Mailbox",
    "Verifier",
    "did_document",
    "invoke_token",
    "issue_token",
    "seal",
    "token_id",
    "verify_audit_log",
    "verify_signature",
]
