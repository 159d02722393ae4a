//! The artifact store as tools an agent can use: save, read and list the artifacts of its run.

use std::sync::Arc;

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::store::{Artifact, ArtifactStore, NewArtifact, Producer};
use crate::error::Error;
use crate::tool::{ToolContext, ToolError, ToolSet, tool_fn};

/// The most content `read_artifact` gives the model at once (64 KiB); the rest is cut, saying so.
pub const MAX_READ_BYTES: usize = 64 * 1024;

/// The most records `list_artifacts` shows the model at once (the newest).
pub const MAX_LIST_ENTRIES: usize = 200;

/// The tools `save_artifact`, `read_artifact` and `list_artifacts` on `store`.
///
/// They see the artifacts of the run that calls them only: an id of another run's artifact is
/// answered as an id of nothing, without the store being read, so a model cannot read what another
/// user's run saved by guessing or being told its id. A call without a run id (a [`ToolContext`] made
/// by hand, or by a server that does not give one) is refused rather than given a bucket shared with
/// every other such caller. Each saved artifact records the run, step, tool and call that made it. A
/// failure of the store itself reaches the model as "the artifact store failed"; the details go to
/// the log.
pub fn artifact_tools(store: Arc<ArtifactStore>) -> Result<ToolSet, Error> {
    let mut tools = ToolSet::new();
    let saving = Arc::clone(&store);
    tools.add(tool_fn(
        "save_artifact",
        "Saves a document, data or file as an artifact the user can fetch later, and returns its id.",
        move |args: SaveArgs, context: ToolContext| {
            let store = Arc::clone(&saving);
            async move {
                let run = run_of(&context)?.to_owned();
                off_thread(move || save(&store, args, &context, run)).await
            }
        },
    ))?;
    let reading = Arc::clone(&store);
    tools.add(tool_fn(
        "read_artifact",
        "Reads an artifact this run saved, by id.",
        move |args: ReadArgs, context: ToolContext| {
            let store = Arc::clone(&reading);
            async move {
                let run = run_of(&context)?.to_owned();
                off_thread(move || read(&store, &args.id, &run)).await
            }
        },
    ))?;
    tools.add(tool_fn(
        "list_artifacts",
        "Lists the artifacts this run saved, newest last.",
        move |_: ListArgs, context: ToolContext| {
            let store = Arc::clone(&store);
            async move {
                let run = run_of(&context)?.to_owned();
                off_thread(move || {
                    let mut artifacts = store.list(Some(&run)).map_err(store_failed)?;
                    let more = artifacts.len().saturating_sub(MAX_LIST_ENTRIES);
                    artifacts.drain(..more);
                    Ok(ListOutput { artifacts, more })
                })
                .await
            }
        },
    ))?;
    Ok(tools)
}

/// The calling run's id, or the refusal of a call that has none.
fn run_of(context: &ToolContext) -> Result<&str, ToolError> {
    if context.run_id.is_empty() {
        return Err(ToolError::failed(
            "artifacts belong to runs, and this call has no run id",
        ));
    }
    Ok(&context.run_id)
}

/// A failure of the store, for the model: what failed is logged, not shown (it names host paths).
fn store_failed(error: Error) -> ToolError {
    match error {
        Error::NotFound { .. } | Error::LimitExceeded { .. } | Error::InvalidArtifact { .. } => {
            ToolError::failed(error)
        }
        error => {
            tracing::warn!(%error, "the artifact store failed");
            ToolError::failed("the artifact store failed")
        }
    }
}

/// The arguments of `save_artifact`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SaveArgs {
    /// A file name for the artifact, such as `summary.md`.
    pub name: String,
    /// Its MIME type, such as `text/markdown`, `application/json` or `image/png`.
    pub mime_type: String,
    /// The content: the text itself, or base64 when `base64` is true.
    pub content: String,
    /// Whether `content` is base64 (for binary files).
    #[serde(default)]
    pub base64: bool,
}

/// The arguments of `read_artifact`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// The artifact's id, as `save_artifact` or `list_artifacts` gave it.
    pub id: String,
}

/// The arguments of `list_artifacts`: none.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {}

/// What `read_artifact` returns.
#[derive(Debug, Serialize)]
struct ReadOutput {
    artifact: Artifact,
    /// The content: text for text and JSON types, base64 otherwise.
    content: String,
    /// Whether `content` is base64.
    base64: bool,
    /// Bytes left out after [`MAX_READ_BYTES`].
    #[serde(skip_serializing_if = "is_zero")]
    cut_bytes: usize,
}

/// What `list_artifacts` returns.
#[derive(Debug, Serialize)]
struct ListOutput {
    /// The newest [`MAX_LIST_ENTRIES`] artifacts, oldest first.
    artifacts: Vec<Artifact>,
    /// How many older ones are not shown.
    #[serde(skip_serializing_if = "is_zero")]
    more: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

fn save(store: &ArtifactStore, args: SaveArgs, context: &ToolContext, run: String) -> Result<Artifact, ToolError> {
    let content = if args.base64 {
        decode_base64(&args.content)?
    } else {
        args.content.into_bytes()
    };
    let producer = Producer {
        run_id: Some(run),
        ..Producer::of_call(context, "save_artifact")
    };
    let artifact = NewArtifact::binary(args.name, args.mime_type, content).produced_by(producer);
    store.save(artifact).map_err(store_failed)
}

/// Base64 as models write it: padded or not, standard or URL-safe, wrapped over lines.
fn decode_base64(text: &str) -> Result<Vec<u8>, ToolError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&compact).ok())
        .ok_or_else(|| ToolError::invalid_arguments("`content` is not base64"))
}

fn read(store: &ArtifactStore, id: &str, run: &str) -> Result<ReadOutput, ToolError> {
    // Another run's artifact is, to this run, no artifact at all: its id names another run, so the
    // store is not even read.
    if !id.is_ascii() || id.len() != 64 || id[..32] != *super::store::run_key(Some(run)) {
        return Err(store_failed(Error::NotFound {
            name: id[..id.floor_char_boundary(64)].to_owned(),
            version: None,
        }));
    }
    let (artifact, content) = store.get(id).map_err(store_failed)?;
    let cut_at = content.len().min(MAX_READ_BYTES);
    // Text and JSON types are UTF-8 (saving checked it); anything else is shown as base64.
    let essence = artifact
        .mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let textual = essence.starts_with("text/") || essence == "application/json" || essence.ends_with("+json");
    let (shown, base64, kept) = match std::str::from_utf8(&content) {
        Ok(text) if textual => {
            let kept = text.floor_char_boundary(cut_at);
            (text[..kept].to_owned(), false, kept)
        }
        _ => (
            base64::engine::general_purpose::STANDARD.encode(&content[..cut_at]),
            true,
            cut_at,
        ),
    };
    Ok(ReadOutput {
        artifact,
        content: shown,
        base64,
        cut_bytes: content.len() - kept,
    })
}

/// Runs blocking store work off the async runtime's threads.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    crate::fs::off_thread(work).await.map_err(ToolError::failed)?
}
