//! A signed, hash-chained, append-only log of what an agent did.
//!
//! Each line of the file (JSON Lines) is one entry: a sequence number, a time, a kind, data, the
//! SHA-256 of the previous line, and the agent's Ed25519 signature over all of that. Editing, dropping
//! or reordering lines breaks the chain at a place [`verify`] reports; cutting lines off the end is
//! found by comparing with a [`Head`] kept elsewhere.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kai_core::{AgentHook, ChatResponse, HookContext, ToolCall, ToolResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::now_seconds;
use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;

/// One entry, as signed (everything but the signature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// What happened: `model_call`, `tool_call`, `consent`, or an application's own kind.
    pub kind: String,
    /// Details (no secrets: tool arguments appear as hashes).
    pub data: serde_json::Value,
    /// base64url SHA-256 of the previous line (or of the log's genesis string for the first entry).
    pub prev: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    entry: Entry,
    sig: String,
}

/// Where a log ended: its last sequence number and the hash of its last line. Keep it outside the log
/// (a database, a checkpoint, another machine) to detect lines cut off the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The last entry's `seq` (0 for an empty log).
    pub seq: u64,
    /// The hash the next entry's `prev` will hold.
    pub hash: String,
}

/// What [`verify`] found wrong, and on which line (counted from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The line is not a well-formed entry.
    Malformed,
    /// The signature does not match: the entry was edited.
    Edited,
    /// `prev` does not match the line before: that line was edited, or lines were removed here.
    ChainBroken,
    /// A sequence number was skipped: entries were dropped.
    Dropped,
    /// A sequence number went backwards or repeated: entries were reordered or duplicated.
    Reordered,
    /// The log ends before the expected head.
    Truncated,
}

fn genesis(did: &Did) -> String {
    hash(format!("kai-audit/v1|{did}").as_bytes())
}

fn hash(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Checks a whole log against its signer. Returns the head, or the first fault and its line.
pub fn verify(path: impl AsRef<Path>, signer: &Did, expected: Option<&Head>) -> Result<Head, Error> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    let mut head = Head {
        seq: 0,
        hash: genesis(signer),
    };
    let lines: Vec<Vec<u8>> = BufReader::new(file)
        .split(b'\n')
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    let sequence_at = |line: &[u8]| serde_json::from_slice::<Line>(line).ok().map(|l| l.entry.seq);
    for (index, bytes) in lines.iter().enumerate() {
        let line_number = index + 1;
        let fault = |fault: Fault| Error::AuditInvalid {
            line: line_number,
            fault,
        };
        let parsed: Line = serde_json::from_slice(bytes).map_err(|_| fault(Fault::Malformed))?;
        let signed = serde_json::to_vec(&parsed.entry).map_err(|_| fault(Fault::Malformed))?;
        let signature = URL_SAFE_NO_PAD
            .decode(&parsed.sig)
            .map_err(|_| fault(Fault::Malformed))?;
        if signer.verify(&signed, &signature).is_err() {
            return Err(fault(Fault::Edited));
        }
        let seq = parsed.entry.seq;
        if seq <= head.seq {
            return Err(fault(Fault::Reordered));
        }
        if seq > head.seq + 1 {
            // The missing entry further down means the lines were swapped, not lost.
            let later = lines[index + 1..].iter().any(|l| sequence_at(l) == Some(head.seq + 1));
            return Err(fault(if later { Fault::Reordered } else { Fault::Dropped }));
        }
        if parsed.entry.prev != head.hash {
            return Err(fault(Fault::ChainBroken));
        }
        head = Head { seq, hash: hash(bytes) };
    }
    if let Some(expected) = expected
        && (head.seq < expected.seq || (head.seq == expected.seq && head.hash != expected.hash))
    {
        return Err(Error::AuditInvalid {
            line: usize::try_from(head.seq).unwrap_or(usize::MAX).saturating_add(1),
            fault: Fault::Truncated,
        });
    }
    Ok(head)
}

/// An open log that an agent appends to.
pub struct AuditLog {
    path: PathBuf,
    identity: Identity,
    state: Mutex<(File, Head)>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("signer", &self.identity.did())
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, signed by `identity`. The existing log is verified first;
    /// a last line cut short by a crash (never acknowledged) is removed.
    pub fn open(path: impl AsRef<Path>, identity: Identity) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        if length > 0 {
            // Drop an unterminated last line: its append never returned.
            let contents = std::fs::read(&path).map_err(io)?;
            let keep = contents.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
            if keep < length {
                file.set_len(keep).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let head = verify(&path, &identity.did(), None)?;
        Ok(Self {
            path,
            identity,
            state: Mutex::new((file, head)),
        })
    }

    /// Appends an entry and syncs it to disk before returning; returns the new head.
    pub fn append(&self, kind: &str, data: serde_json::Value) -> Result<Head, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (file, head) = &mut *state;
        let entry = Entry {
            seq: head.seq + 1,
            time: now_seconds(),
            kind: kind.to_owned(),
            data,
            prev: head.hash.clone(),
        };
        let signed = serde_json::to_vec(&entry).map_err(|e| Error::Io(e.to_string()))?;
        let sig = URL_SAFE_NO_PAD.encode(self.identity.sign(&signed));
        let mut line = serde_json::to_vec(&Line { entry, sig }).map_err(|e| Error::Io(e.to_string()))?;
        let new_head = Head {
            seq: head.seq + 1,
            hash: hash(&line),
        };
        line.push(b'\n');
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", self.path.display()));
        file.write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)?;
        *head = new_head.clone();
        Ok(new_head)
    }

    /// The current head.
    pub fn head(&self) -> Head {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1.clone()
    }
}

/// An [`AgentHook`] that records every model call (model, usage, stop reason) and tool call (name, call
/// id, SHA-256 of the arguments, whether it failed) in an [`AuditLog`]. A failed append stops the run:
/// an agent that cannot keep its record should not act. Consent decisions are recorded by the
/// [`Verifier`](crate::Verifier) given the same log ([`Verifier::with_audit`](crate::Verifier::with_audit)).
#[derive(Debug)]
pub struct AuditHook {
    log: std::sync::Arc<AuditLog>,
}

impl AuditHook {
    /// A hook writing to `log`.
    pub fn new(log: std::sync::Arc<AuditLog>) -> Self {
        Self { log }
    }
}

#[kai_core::async_trait]
impl AgentHook for AuditHook {
    async fn after_model(&self, context: &HookContext, response: &mut ChatResponse) -> Result<(), kai_core::Error> {
        let data = serde_json::json!({
            "agent": &*context.agent, "step": context.step, "model": response.model,
            "usage": response.usage, "stop_reason": response.stop_reason,
            "tool_calls": response.tool_calls().map(|c| c.name.clone()).collect::<Vec<_>>(),
        });
        self.log
            .append("model_call", data)
            .map(|_| ())
            .map_err(|e| kai_core::Error::Hook {
                message: format!("audit log: {e}"),
            })
    }

    async fn after_tool(&self, context: &HookContext, call: &ToolCall, result: &mut ToolResult) {
        let data = serde_json::json!({
            "agent": &*context.agent, "step": context.step, "tool": call.name, "call_id": call.id,
            "arguments_sha256": hash(call.arguments.as_bytes()), "error": result.is_error,
        });
        if let Err(error) = self.log.append("tool_call", data) {
            // after_tool cannot stop the run; make the failure visible to the model and to tracing.
            tracing::error!(%error, "audit log append failed");
            result.is_error = true;
            result.content = format!("the audit log could not record this call: {error}");
        }
    }
}
