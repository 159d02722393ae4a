//! The workspace and the sandbox as kai tools. A refusal (a path outside the workspace, a program not
//! allowed) is a tool error whose message tells the model what was refused and why.

use std::sync::Arc;

use kai_core::{ToolContext, ToolError, ToolSet, TypedTool};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Error;
use crate::output::{CommandOutput, KillReason};
use crate::sandbox::Sandbox;
use crate::workspace::{Listing, Workspace};

/// The file tools (`read_file`, `write_file`, `list_directory`, `remove_path`) on `workspace`.
pub fn file_tools(workspace: Arc<Workspace>) -> ToolSet {
    let mut tools = ToolSet::new();
    for tool in [
        Arc::new(ReadFile(workspace.clone())) as Arc<dyn kai_core::Tool>,
        Arc::new(WriteFile(workspace.clone())),
        Arc::new(ListDirectory(workspace.clone())),
        Arc::new(RemovePath(workspace)),
    ] {
        add(&mut tools, tool);
    }
    tools
}

/// The file tools on the sandbox's workspace and `run_command`.
pub fn all_tools(sandbox: Arc<Sandbox>) -> ToolSet {
    let mut tools = file_tools(sandbox.workspace().clone());
    add(&mut tools, Arc::new(RunCommand(sandbox)));
    tools
}

/// Adds a tool of this module; their names are distinct and their schemas compile.
fn add(tools: &mut ToolSet, tool: Arc<dyn kai_core::Tool>) {
    let name = tool.definition().name;
    if let Err(error) = tools.add_shared(tool) {
        tracing::error!(%name, %error, "a built-in tool was refused");
    }
}

/// A workspace operation off the async runtime's threads: it may wait on the disk.
async fn blocking<T: Send + 'static>(
    operation: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(operation)
        .await
        .map_err(ToolError::failed)?
        .map_err(ToolError::failed)
}

/// Arguments naming one path.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PathArgs {
    /// A path relative to the workspace, such as `notes/todo.txt`.
    pub path: String,
}

/// Reads a text file of the workspace.
#[derive(Debug)]
pub struct ReadFile(Arc<Workspace>);

impl TypedTool for ReadFile {
    type Args = PathArgs;
    type Output = String;

    fn name(&self) -> String {
        "read_file".into()
    }
    fn description(&self) -> String {
        "Reads a text file in the workspace. The path is relative to the workspace.".into()
    }
    async fn call(&self, args: PathArgs, _context: ToolContext) -> Result<String, ToolError> {
        let workspace = self.0.clone();
        let bytes = blocking(move || workspace.read(&args.path)).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Arguments of `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// A path relative to the workspace; missing directories are made.
    pub path: String,
    /// The whole new contents of the file.
    pub content: String,
}

/// Writes a text file of the workspace.
#[derive(Debug)]
pub struct WriteFile(Arc<Workspace>);

impl TypedTool for WriteFile {
    type Args = WriteArgs;
    type Output = String;

    fn name(&self) -> String {
        "write_file".into()
    }
    fn description(&self) -> String {
        "Writes a text file in the workspace, replacing it if it exists. The path is relative to the workspace.".into()
    }
    async fn call(&self, args: WriteArgs, _context: ToolContext) -> Result<String, ToolError> {
        let workspace = self.0.clone();
        let written = args.content.len();
        let path = args.path.clone();
        blocking(move || workspace.write(&args.path, args.content.as_bytes())).await?;
        Ok(format!("wrote {written} bytes to {path}"))
    }
}

/// Arguments of `list_directory`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// A directory relative to the workspace; `.` is the workspace itself.
    #[serde(default = "workspace_itself")]
    pub path: String,
}

fn workspace_itself() -> String {
    ".".into()
}

/// Lists a directory of the workspace.
#[derive(Debug)]
pub struct ListDirectory(Arc<Workspace>);

impl TypedTool for ListDirectory {
    type Args = ListArgs;
    type Output = Listing;

    fn name(&self) -> String {
        "list_directory".into()
    }
    fn description(&self) -> String {
        "Lists the files and directories in a directory of the workspace, with their sizes.".into()
    }
    async fn call(&self, args: ListArgs, _context: ToolContext) -> Result<Listing, ToolError> {
        let workspace = self.0.clone();
        blocking(move || workspace.list(&args.path)).await
    }
}

/// Removes a file or an empty directory of the workspace.
#[derive(Debug)]
pub struct RemovePath(Arc<Workspace>);

impl TypedTool for RemovePath {
    type Args = PathArgs;
    type Output = String;

    fn name(&self) -> String {
        "remove_path".into()
    }
    fn description(&self) -> String {
        "Removes a file or an empty directory in the workspace.".into()
    }
    async fn call(&self, args: PathArgs, _context: ToolContext) -> Result<String, ToolError> {
        let workspace = self.0.clone();
        let path = args.path.clone();
        blocking(move || workspace.remove(&args.path)).await?;
        Ok(format!("removed {path}"))
    }
}

/// Arguments of `run_command`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommandArgs {
    /// The program and its arguments, one element each, such as `["grep", "-rn", "TODO", "."]`. No
    /// shell parses them: quotes, `;`, `|`, `$( )` and globs are passed as they are.
    pub command: Vec<String>,
}

/// Runs an allowed program in the sandbox, in the workspace.
#[derive(Debug)]
pub struct RunCommand(Arc<Sandbox>);

impl TypedTool for RunCommand {
    type Args = CommandArgs;
    type Output = CommandOutput;

    fn name(&self) -> String {
        "run_command".into()
    }
    fn description(&self) -> String {
        let programs = self.0.policy().allowed_list();
        format!(
            "Runs a program in the workspace, in a sandbox without network, and returns its exit code and \
             output. The command is a list: the program, then each argument. Allowed programs: {programs}."
        )
    }
    async fn call(&self, args: CommandArgs, context: ToolContext) -> Result<CommandOutput, ToolError> {
        let output = self
            .0
            .run(&args.command, &context.cancel)
            .await
            .map_err(ToolError::failed)?;
        if output.killed == Some(KillReason::Cancelled) {
            return Err(ToolError::Cancelled);
        }
        Ok(output)
    }
}
