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

/// The tools `save_artifact`, `read_artifact` and `list_artifacts` on `store`.
///
/// They see the artifacts of the run that calls them only: an id of another run's artifact is
/// answered as an id of nothing, so a model cannot read what another user's run saved by guessing or
/// being told its id. Each saved artifact records the run, step, tool and call that made it.
pub fn artifact_tools(store: Arc<ArtifactStore>) -> Result<ToolSet, Error> {
    let mut tools = ToolSet::new();
    let saving = Arc::clone(&store);
    tools.add(tool_fn(
        "save_artifact",
        "Saves a document, data or file as an artifact the user can fetch later, and returns its id.",
        move |args: SaveArgs, context: ToolContext| {
            let store = Arc::clone(&saving);
            async move { off_thread(move || save(&store, args, &context)).await }
        },
    ))?;
    let reading = Arc::clone(&store);
    tools.add(tool_fn(
        "read_artifact",
        "Reads an artifact this run saved, by id.",
        move |args: ReadArgs, context: ToolContext| {
            let store = Arc::clone(&reading);
            async move { off_thread(move || read(&store, &args.id, &context)).await }
        },
    ))?;
    tools.add(tool_fn(
        "list_artifacts",
        "Lists the artifacts this run saved.",
        move |_: ListArgs, context: ToolContext| {
            let store = Arc::clone(&store);
            async move {
                off_thread(move || {
                    let run = Some(context.run_id.as_str()).filter(|id| !id.is_empty());
                    store.list(run).map_err(ToolError::failed)
                })
                .await
            }
        },
    ))?;
    Ok(tools)
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
    /// The content: text for text and JSON, base64 otherwise.
    content: String,
    /// Whether `content` is base64.
    base64: bool,
    /// Bytes left out after [`MAX_READ_BYTES`].
    #[serde(skip_serializing_if = "is_zero")]
    cut_bytes: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

fn save(store: &ArtifactStore, args: SaveArgs, context: &ToolContext) -> Result<Artifact, ToolError> {
    let content = if args.base64 {
        base64::engine::general_purpose::STANDARD
            .decode(args.content.trim())
            .map_err(|error| ToolError::invalid_arguments(format_args!("`content` is not base64: {error}")))?
    } else {
        args.content.into_bytes()
    };
    let artifact = NewArtifact::binary(args.name, args.mime_type, content)
        .produced_by(Producer::of_call(context, "save_artifact"));
    store.save(artifact).map_err(ToolError::failed)
}

fn read(store: &ArtifactStore, id: &str, context: &ToolContext) -> Result<ReadOutput, ToolError> {
    let run = Some(context.run_id.as_str()).filter(|id| !id.is_empty());
    let (artifact, content) = match store.artifact(id) {
        // Another run's artifact is, to this run, no artifact at all.
        Ok(artifact) if artifact.producer.run_id.as_deref() == run => store.get(id).map_err(ToolError::failed)?,
        Ok(_) => {
            return Err(ToolError::failed(Error::NotFound {
                name: id.to_owned(),
                version: None,
            }));
        }
        Err(error) => return Err(ToolError::failed(error)),
    };
    let cut_at = content.len().min(MAX_READ_BYTES);
    let (shown, base64, kept) = match std::str::from_utf8(&content) {
        Ok(text) => {
            let kept = text.floor_char_boundary(cut_at);
            (text[..kept].to_owned(), false, kept)
        }
        Err(_) => (
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
