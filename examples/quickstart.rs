//! An agent with a calculator and a file reader confined to one directory, answering a question end to
//! end and printing the streamed answer and its tool calls as they happen.
//!
//! ```sh
//! scripts/quickstart.sh "What is 12.5% of 3,120?"
//! KAI_MODEL=openai:gpt-4o-mini scripts/quickstart.sh "Summarise notes.md"
//! ```
//!
//! `KAI_MODEL` picks the model (`llamacpp:smollm2@http://127.0.0.1:18181/v1` by default: the local
//! llama.cpp server that `scripts/quickstart.sh` starts); `KAI_FILES` the directory the file tools may
//! read (default: `examples/files`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt as _;
use kai_core::{Agent, AgentEvent, Error, ToolError, tool_fn};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Calculation {
    /// An arithmetic expression, for example `(3 + 4) * 2.5 / 7` or `2^10`.
    expression: String,
}

/// Evaluates an arithmetic expression.
fn calculate(expression: &str) -> Result<f64, ToolError> {
    let value = evalexpr::eval(expression).map_err(ToolError::invalid_arguments)?;
    match value {
        evalexpr::Value::Int(n) => Ok(n as f64),
        evalexpr::Value::Float(x) if x.is_finite() => Ok(x),
        other => Err(ToolError::invalid_arguments(format_args!(
            "{expression:?} is not a number but {other}"
        ))),
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ReadFile {
    /// The file's path, relative to the notes directory.
    path: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ListFiles {}

/// Files larger than this are refused rather than read into the prompt.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Resolves `relative` inside `root`, refusing anything that escapes it (`..`, absolute paths, symlinks).
fn confined(root: &Path, relative: &str) -> Result<PathBuf, ToolError> {
    let root = root.canonicalize().map_err(ToolError::failed)?;
    let candidate = root.join(relative);
    let resolved = candidate.canonicalize().map_err(|_| {
        ToolError::invalid_arguments(format_args!("no file {relative:?}; call list_files to see what exists"))
    })?;
    if !resolved.starts_with(&root) {
        return Err(ToolError::invalid_arguments(format_args!(
            "{relative:?} is outside the notes directory"
        )));
    }
    Ok(resolved)
}

fn read_file(root: &Path, relative: &str) -> Result<String, ToolError> {
    let path = confined(root, relative)?;
    let metadata = std::fs::metadata(&path).map_err(ToolError::failed)?;
    if !metadata.is_file() {
        return Err(ToolError::invalid_arguments(format_args!("{relative:?} is not a file")));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(ToolError::failed(format_args!(
            "{relative:?} is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read_to_string(&path).map_err(ToolError::failed)
}

fn list_files(root: &Path) -> Result<Vec<String>, ToolError> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(ToolError::failed)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn agent(model: std::sync::Arc<dyn kai_core::ChatModel>, files: PathBuf) -> Result<Agent, Error> {
    let read_root = files.clone();
    Agent::builder_shared(model)
        .name("quickstart")
        .instructions(
            "You are a helpful assistant. Use the calculate tool for any arithmetic and the list_files and \
             read_file tools to look at the user's notes. Answer briefly.",
        )
        .tool(tool_fn(
            "calculate",
            "Evaluates an arithmetic expression.",
            |c: Calculation| async move { calculate(&c.expression) },
        ))
        .tool(tool_fn(
            "list_files",
            "Lists the files in the notes directory.",
            move |_: ListFiles| {
                let root = files.clone();
                async move { list_files(&root) }
            },
        ))
        .tool(tool_fn(
            "read_file",
            "Reads a text file from the notes directory.",
            move |r: ReadFile| {
                let root = read_root.clone();
                async move { read_file(&root, &r.path) }
            },
        ))
        .temperature(0.0)
        .max_tokens(256)
        .max_steps(6)
        .answer_on_last_step(true)
        .tool_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(300))
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let question = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let question = if question.trim().is_empty() {
        "What is 17 * 23 + 4?".to_owned()
    } else {
        question
    };
    let spec = std::env::var("KAI_MODEL").unwrap_or_else(|_| "llamacpp:smollm2@http://127.0.0.1:18181/v1".into());
    let files = std::env::var_os("KAI_FILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("files"));

    let agent = match kai_providers::model_from_str(&spec).and_then(|model| agent(model, files)) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("could not set up the agent: {error}");
            return ExitCode::FAILURE;
        }
    };

    println!("model: {spec}\nquestion: {question}\n");
    let mut events = agent.stream(question);
    while let Some(event) = events.next().await {
        match event {
            Ok(AgentEvent::TextDelta { text }) => print!("{text}"),
            Ok(AgentEvent::ToolCallStarted { call }) => println!("\n→ {}({})", call.name, call.arguments),
            Ok(AgentEvent::ToolCallFinished { result }) => {
                let mark = if result.is_error { "✗" } else { "←" };
                println!("{mark} {}: {}", result.name, result.content);
            }
            Ok(AgentEvent::StepFinished { .. }) => {}
            Ok(AgentEvent::Finished { output }) => {
                println!(
                    "\n\n[{} steps, {} tokens in, {} out]",
                    output.steps, output.usage.input_tokens, output.usage.output_tokens
                );
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(error) => {
                eprintln!("\nthe run failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculator() {
        assert_eq!(calculate("(3 + 4) * 2").unwrap(), 14.0);
        assert_eq!(calculate("7 / 2.0").unwrap(), 3.5);
        assert!(calculate("2 +").is_err());
        assert!(calculate("\"text\"").is_err());
    }

    #[test]
    fn file_tools_stay_inside_their_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("files");
        assert!(list_files(&root).unwrap().contains(&"notes.md".to_owned()));
        assert!(read_file(&root, "notes.md").unwrap().contains("kAI"));
        assert!(read_file(&root, "../Cargo.toml").is_err());
        assert!(read_file(&root, "/etc/passwd").is_err());
        assert!(read_file(&root, "missing.md").is_err());
    }
}
