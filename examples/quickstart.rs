//! An agent with a calculator and a file reader confined to one directory, answering a question end to
//! end and printing the streamed answer and its tool calls as they happen.
//!
//! ```sh
//! scripts/quickstart.sh "What is 12.5% of 3,120?"
//! KAI_MODEL=openai:gpt-4o-mini scripts/quickstart.sh "Summarise notes.md"
//! ```
//!
//! `KAI_MODEL` picks the model (`llamacpp:qwen2.5-coder-1.5b@http://127.0.0.1:18181/v1` by default:
//! the local llama.cpp server that `scripts/quickstart.sh` starts); `KAI_FILES` the directory the file tools may
//! read (default: `examples/files`).
//!
//! With `--eval QUESTIONS.json [--min N]` it answers a fixed set of questions instead (each with the
//! strings a right answer contains) and prints how many it answered right, failing below `N`:
//! `scripts/eval-quickstart.sh` runs it on `examples/quickstart_eval.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt as _;
use kai_core::{Agent, AgentEvent, Error, ToolChoice, ToolError, tool_fn};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Calculation {
    /// The arithmetic expression to evaluate, with numbers and + - * / ^ ( ).
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
/// This package's directory: where cargo says it is now (`cargo run`, `cargo test`), else where it
/// was built. A build cache shared by clones at other paths keeps the path of the clone that built it.
fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

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

/// Reads a note. The notes directory is flat, so a path names a note by its last component: small
/// models write `/home/user/notes.md` for `notes.md`.
fn read_file(root: &Path, path: &str) -> Result<String, ToolError> {
    let relative = Path::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| ToolError::invalid_arguments(format_args!("{path:?} names no file")))?;
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
            "You are a helpful assistant with a calculator and the user's notes. For arithmetic, call \
             calculate. For a question about the notes, call read_file with the note's file name (such as \
             notes.md) and answer from what it says; call list_files to see which notes exist. Answer \
             briefly.",
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
        // Small local models: every step is one valid call or the answer, and the first one looks
        // something up.
        .constrained_steps(true)
        .tool_choice(ToolChoice::Required)
        .tool_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(300))
        .build()
}

/// One question of an evaluation set, and what a right answer contains: one item of each group. A
/// number must appear as a number (`391` is in "391.0" but not in "3910"); other text is compared
/// without case.
#[derive(serde::Deserialize)]
struct Question {
    question: String,
    expect: Vec<Vec<String>>,
}

impl Question {
    fn is_answered_by(&self, answer: &str) -> bool {
        let text = answer.to_lowercase();
        let numbers = numbers_in(answer);
        self.expect.iter().all(|group| {
            group.iter().any(|expected| match expected.parse::<f64>() {
                Ok(number) => numbers.iter().any(|found| (found - number).abs() < 1e-9),
                Err(_) => text.contains(&expected.to_lowercase()),
            })
        })
    }
}

/// The numbers written in `text`, with thousands separators (`3,120`) read as part of them.
fn numbers_in(text: &str) -> Vec<f64> {
    let mut numbers = Vec::new();
    let mut current = String::new();
    for c in text.chars().chain([' ']) {
        match c {
            '0'..='9' => current.push(c),
            '.' if !current.is_empty() && !current.contains('.') => current.push(c),
            ',' if !current.is_empty() => {}
            _ => {
                if let Ok(number) = current.trim_end_matches('.').parse() {
                    numbers.push(number);
                }
                current.clear();
            }
        }
    }
    numbers
}

/// Answers every question of `path` and prints each result and the score.
async fn evaluate(agent: &Agent, path: &Path, min: usize) -> ExitCode {
    let questions: Vec<Question> = match std::fs::read(path)
        .map_err(|error| error.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()))
    {
        Ok(questions) => questions,
        Err(error) => {
            eprintln!("could not read {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let mut right = 0;
    for question in &questions {
        let (answer, steps) = match agent.run(question.question.as_str()).await {
            Ok(output) => (output.answer, output.steps),
            Err(error) => (format!("(failed: {error})"), error.state.steps),
        };
        let correct = question.is_answered_by(&answer);
        right += usize::from(correct);
        let mark = if correct { "✓" } else { "✗" };
        let shown: String = answer
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(100)
            .collect();
        println!("{mark} [{steps} steps] {} → {shown}", question.question);
    }
    println!(
        "\nanswered correctly: {right}/{} in {:.0} s",
        questions.len(),
        started.elapsed().as_secs_f64()
    );
    if right < min {
        eprintln!("fewer than the {min} required");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The command line: a question, or `--eval FILE [--min N]`.
enum Mode {
    Ask(String),
    Evaluate { path: PathBuf, min: usize },
}

fn mode() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("--eval") {
        let question = args.join(" ");
        return Ok(Mode::Ask(if question.trim().is_empty() {
            "What is 17 * 23 + 4?".to_owned()
        } else {
            question
        }));
    }
    let path = args.get(1).ok_or("--eval needs a questions file")?;
    let min = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--min"), Some(min)) => min.parse().map_err(|_| format!("--min {min:?} is not a count"))?,
        (None, _) => 0,
        _ => return Err("usage: quickstart --eval QUESTIONS.json [--min N]".into()),
    };
    Ok(Mode::Evaluate {
        path: PathBuf::from(path),
        min,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match mode() {
        Ok(mode) => mode,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let spec =
        std::env::var("KAI_MODEL").unwrap_or_else(|_| "llamacpp:qwen2.5-coder-1.5b@http://127.0.0.1:18181/v1".into());
    let files = std::env::var_os("KAI_FILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| package_dir().join("files"));

    let agent = match kai_providers::model_from_str(&spec).and_then(|model| agent(model, files)) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("could not set up the agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    let question = match mode {
        Mode::Ask(question) => question,
        Mode::Evaluate { path, min } => {
            println!("model: {spec}\nquestions: {}\n", path.display());
            return evaluate(&agent, &path, min).await;
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
        let root = package_dir().join("files");
        assert_eq!(list_files(&root).unwrap(), ["notes.md", "todo.md", "trip.md"]);
        assert!(read_file(&root, "notes.md").unwrap().contains("kAI"));
        assert!(read_file(&root, "../Cargo.toml").is_err());
        assert!(read_file(&root, "/etc/passwd").is_err());
        assert!(read_file(&root, "missing.md").is_err());
        assert!(read_file(&root, "..").is_err());
        assert!(read_file(&root, "/home/user/trip.md").unwrap().contains("Lisbon"));
    }

    #[test]
    fn answers_are_checked_without_case_and_numbers_as_numbers() {
        let question = Question {
            question: "?".into(),
            expect: vec![vec!["Lisbon".into()], vec!["3120".into(), "three".into()]],
        };
        assert!(question.is_answered_by("LISBON, 3,120.0"));
        assert!(question.is_answered_by("lisbon three"));
        assert!(!question.is_answered_by("Lisbon"));
        assert!(
            !question.is_answered_by("Lisbon 31200"),
            "a number is not a part of another"
        );
        assert_eq!(numbers_in("14 people at 23.50 each, 1,024. Done"), [14.0, 23.5, 1024.0]);
        let set: Vec<Question> =
            serde_json::from_str(include_str!("quickstart_eval.json")).expect("the evaluation set parses");
        assert_eq!(set.len(), 20);
    }
}
