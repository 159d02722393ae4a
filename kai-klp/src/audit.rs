//! A signed, hash-chained, append-only log of what an agent did.
//!
//! Each line of the file (JSON Lines) is one entry: a sequence number, a time, a kind, data, the
//! SHA-256 of the previous line, and the agent's Ed25519 signature over the line's own bytes (all of it
//! but the `sig` member). Editing, dropping or reordering lines breaks the chain at a place [`verify`]
//! reports; cutting lines off the end, or rewriting them, is found by comparing with a [`Head`] kept
//! elsewhere.

use std::fs::{File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
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

/// The member that ends every line, after the signed entry's fields.
const SIGNATURE_MEMBER: &[u8] = b",\"sig\":\"";

/// A line's entry, the exact bytes its signature covers (the line without its `sig` member) and the
/// signature; `None` if the line is not shaped so.
fn split_line(line: &[u8]) -> Option<(Entry, Vec<u8>, Vec<u8>)> {
    let at = line
        .windows(SIGNATURE_MEMBER.len())
        .rposition(|window| window == SIGNATURE_MEMBER)?;
    let encoded = line[at + SIGNATURE_MEMBER.len()..].strip_suffix(b"\"}")?;
    let signature = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let mut signed = line[..at].to_vec();
    signed.push(b'}');
    let entry = serde_json::from_slice(&signed).ok()?;
    Some((entry, signed, signature))
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
    /// The entry at the expected head's sequence number is not the one the head names: the log was
    /// rewritten from there on.
    Rewritten,
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
    let contents = std::fs::read(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    let start = Head {
        seq: 0,
        hash: genesis(signer),
    };
    verify_from(&contents, signer, start, expected)
}

/// Checks the lines of `contents` as the continuation of a log that ended at `start`.
fn verify_from(contents: &[u8], signer: &Did, start: Head, expected: Option<&Head>) -> Result<Head, Error> {
    let mut head = start;
    let body = contents.strip_suffix(b"\n").unwrap_or(contents);
    let lines: Vec<&[u8]> = match body.is_empty() {
        true => Vec::new(),
        false => body.split(|&b| b == b'\n').collect(),
    };
    let sequence_at = |line: &[u8]| split_line(line).map(|(entry, _, _)| entry.seq);
    for (index, bytes) in lines.iter().enumerate() {
        let line_number = index + 1;
        let fault = |fault: Fault| Error::AuditInvalid {
            line: line_number,
            fault,
        };
        let (entry, signed, signature) = split_line(bytes).ok_or_else(|| fault(Fault::Malformed))?;
        // The signature covers the stored bytes themselves, not a re-serialisation of what they say.
        if signer.verify(&signed, &signature).is_err() {
            return Err(fault(Fault::Edited));
        }
        let seq = entry.seq;
        if seq <= head.seq {
            return Err(fault(Fault::Reordered));
        }
        if seq > head.seq + 1 {
            // The missing entry further down means the lines were swapped, not lost.
            let later = lines[index + 1..].iter().any(|l| sequence_at(l) == Some(head.seq + 1));
            return Err(fault(if later { Fault::Reordered } else { Fault::Dropped }));
        }
        if entry.prev != head.hash {
            return Err(fault(Fault::ChainBroken));
        }
        head = Head { seq, hash: hash(bytes) };
        if let Some(expected) = expected
            && expected.seq == seq
            && expected.hash != head.hash
        {
            return Err(fault(Fault::Rewritten));
        }
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
    state: Mutex<Appender>,
}

/// The open file, where it ends, and whether a failed write left it unusable.
struct Appender {
    file: File,
    head: Head,
    length: u64,
    broken: bool,
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
    /// Opens (or creates) the log at `path`, signed by `identity`. The existing log is verified first.
    /// A last line cut short (by a crash before its append returned, or by someone cutting the file) is
    /// removed, and an `audit_recovered` entry recording its length and hash is appended, so the loss
    /// stays visible in the signed chain.
    pub fn open(path: impl AsRef<Path>, identity: Identity) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let contents = std::fs::read(&path).map_err(io)?;
        let keep = contents.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let did = identity.did();
        let genesis_head = Head {
            seq: 0,
            hash: genesis(&did),
        };
        // The terminated lines are checked before anything is changed: a log that fails is left as it is.
        let mut head = verify_from(&contents[..keep], &did, genesis_head, None)?;
        let mut length = keep as u64;
        let mut dropped = None;
        let tail = &contents[keep..];
        if !tail.is_empty() {
            match verify_from(tail, &did, head.clone(), None) {
                // A whole, valid entry that lost only its newline: it stays, and gets its newline.
                Ok(next) => {
                    file.write_all(b"\n").and_then(|()| file.sync_data()).map_err(io)?;
                    head = next;
                    length = contents.len() as u64 + 1;
                }
                // A line cut short: removed, and the removal recorded below.
                Err(_) => {
                    dropped = Some(serde_json::json!({
                        "dropped_bytes": tail.len(),
                        "dropped_sha256": hash(tail),
                    }));
                    file.set_len(keep as u64).map_err(io)?;
                    file.sync_all().map_err(io)?;
                }
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let log = Self {
            path,
            identity,
            state: Mutex::new(Appender {
                file,
                head,
                length,
                broken: false,
            }),
        };
        if let Some(dropped) = dropped {
            log.append("audit_recovered", dropped)?;
        }
        Ok(log)
    }

    /// Appends an entry and syncs it to disk before returning; returns the new head. If the write fails,
    /// the file is cut back to where it ended, so no half line is left for the next append to glue onto;
    /// if even that fails, every later append fails until the log is opened again.
    pub fn append(&self, kind: &str, data: serde_json::Value) -> Result<Head, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let io = |e: std::io::Error| Error::Io(format!("audit log {}: {e}", self.path.display()));
        if state.broken {
            return Err(Error::Io(format!(
                "audit log {}: an earlier append failed and could not be undone; open the log again",
                self.path.display()
            )));
        }
        let entry = Entry {
            seq: state.head.seq + 1,
            time: now_seconds(),
            kind: kind.to_owned(),
            data,
            prev: state.head.hash.clone(),
        };
        let signed = serde_json::to_vec(&entry).map_err(|e| Error::Io(e.to_string()))?;
        let sig = URL_SAFE_NO_PAD.encode(self.identity.sign(&signed));
        // The stored line is the signed bytes with the signature as a last member.
        let mut line = signed;
        line.pop();
        line.extend_from_slice(SIGNATURE_MEMBER);
        line.extend_from_slice(sig.as_bytes());
        line.extend_from_slice(b"\"}");
        let new_head = Head {
            seq: entry.seq,
            hash: hash(&line),
        };
        line.push(b'\n');
        let written = state.file.write_all(&line).and_then(|()| state.file.sync_data());
        if let Err(error) = written {
            let undone = state.file.set_len(state.length).and_then(|()| state.file.sync_data());
            state.broken = undone.is_err();
            return Err(io(error));
        }
        state.length += line.len() as u64;
        state.head = new_head.clone();
        Ok(new_head)
    }

    /// The current head.
    pub fn head(&self) -> Head {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).head.clone()
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
