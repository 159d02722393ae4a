//! Named templates rendered with Tera, strictly.

use std::collections::HashMap;
use std::path::Path;

use tera::ast::Node;

use crate::error::Error;
use crate::prompts::{MAX_OUTPUT, MAX_TEMPLATE, check_name};

/// A set of named templates that can include one another.
///
/// ```
/// use kai_core::prompts::PromptTemplates;
/// use serde_json::json;
///
/// let mut templates = PromptTemplates::new();
/// templates.add("rules", "Answer in {{ language }}.").unwrap();
/// templates.add("system", "You help {{ user.name }}. {% include \"rules\" %}").unwrap();
/// let text = templates.render("system", &json!({"user": {"name": "Ada"}, "language": "French"})).unwrap();
/// assert_eq!(text, "You help Ada. Answer in French.");
/// // A variable the context lacks is an error naming it and the template that uses it.
/// let error = templates.render("system", &json!({"user": {"name": "Ada"}})).unwrap_err();
/// assert!(matches!(error, kai_core::Error::UndefinedVariable { template, variable } if template == "rules" && variable == "language"));
/// ```
#[derive(Debug, Clone)]
pub struct PromptTemplates {
    tera: tera::Tera,
}

impl Default for PromptTemplates {
    fn default() -> Self {
        let mut tera = tera::Tera::default();
        // Prompts are not HTML: `<`, `&` and quotes stay as written, whatever a template is named.
        tera.autoescape_on(Vec::new());
        // A template must not read the process's environment (API keys) into a prompt.
        tera.register_function("get_env", |_: &HashMap<String, tera::Value>| {
            Err(tera::Error::msg("get_env is not available in prompts"))
        });
        tera.register_function("range", bounded_range);
        PromptTemplates { tera }
    }
}

/// The most numbers `range` gives.
const MAX_RANGE: u64 = 10_000;

/// Tera's `range(end, start=0, step_by=1)`, refusing a zero step (which never ends) and more than
/// [`MAX_RANGE`] items.
fn bounded_range(arguments: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let number = |name: &str, default: Option<u64>| match arguments.get(name) {
        Some(value) => value
            .as_u64()
            .ok_or_else(|| tera::Error::msg(format!("`range`'s {name} must be a whole number"))),
        None => default.ok_or_else(|| tera::Error::msg(format!("`range` needs {name}"))),
    };
    let (start, end, step) = (
        number("start", Some(0))?,
        number("end", None)?,
        number("step_by", Some(1))?,
    );
    if step == 0 {
        return Err(tera::Error::msg("`range`'s step_by must be above 0"));
    }
    if end.saturating_sub(start).div_ceil(step) > MAX_RANGE {
        return Err(tera::Error::msg(format!("`range` gives at most {MAX_RANGE} numbers")));
    }
    Ok(tera::Value::from(
        (start..end).step_by(step as usize).collect::<Vec<_>>(),
    ))
}

impl PromptTemplates {
    /// No templates yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the template `name`, checking its syntax now, and that it includes itself
    /// through no chain of includes. A template refused leaves the set as it was.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), Error> {
        self.add_all([(name, source)])
    }

    /// Adds several templates at once, so that they may include, extend or import one another.
    fn add_all<'a>(&mut self, templates: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> Result<(), Error> {
        for (name, source) in templates.clone() {
            check_name(name)?;
            if source.len() > MAX_TEMPLATE {
                return Err(Error::Template {
                    template: name.to_owned(),
                    message: format!("it is {} bytes, over the limit of {MAX_TEMPLATE}", source.len()),
                });
            }
        }
        let before = self.tera.clone();
        let added = self
            .tera
            .add_raw_templates(templates.clone())
            .map_err(|error| {
                template_error(
                    templates.clone().into_iter().next().map_or("", |(name, _)| name),
                    &error,
                )
            })
            .and_then(|()| self.check_cycles());
        if added.is_err() {
            self.tera = before;
        }
        added
    }

    /// The templates `name` includes directly (none when there is no such template).
    pub(crate) fn includes_of(&self, name: &str) -> Vec<String> {
        let mut names = Vec::new();
        if let Ok(template) = self.tera.get_template(name) {
            collect_includes(&template.ast, &mut names);
        }
        names
    }

    /// Refuses a template that includes itself, directly or through others: rendering it would
    /// recurse until the stack ran out.
    fn check_cycles(&self) -> Result<(), Error> {
        fn visit(
            templates: &PromptTemplates,
            name: &str,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Result<(), Error> {
            if done.iter().any(|finished| finished == name) {
                return Ok(());
            }
            if let Some(start) = path.iter().position(|on_path| on_path == name) {
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(Error::Template {
                    template: name.to_owned(),
                    message: format!("it includes itself: {}", cycle.join(" → ")),
                });
            }
            path.push(name.to_owned());
            for included in templates.includes_of(name) {
                visit(templates, &included, path, done)?;
            }
            path.pop();
            done.push(name.to_owned());
            Ok(())
        }
        let mut done = Vec::new();
        for name in self.names() {
            visit(self, &name, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// The templates of a directory: each regular file whose name without its extension is a prompt
    /// name (`system.tera` is `system`); links and subdirectories are left out.
    pub fn from_dir(directory: impl AsRef<Path>) -> Result<Self, Error> {
        let directory = directory.as_ref();
        let unreadable = |error: std::io::Error| Error::Storage {
            message: format!("reading {}: {error}", directory.display()),
        };
        let mut sources: Vec<(String, String)> = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(directory)
            .map_err(unreadable)?
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let metadata = std::fs::symlink_metadata(&path).map_err(unreadable)?;
            let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
            if !metadata.is_file() || check_name(name).is_err() {
                continue;
            }
            if sources.iter().any(|(known, _)| known == name) {
                return Err(Error::Template {
                    template: name.to_owned(),
                    message: format!("two files of {} are named {name}", directory.display()),
                });
            }
            if metadata.len() > MAX_TEMPLATE as u64 {
                return Err(Error::Template {
                    template: name.to_owned(),
                    message: format!("it is {} bytes, over the limit of {MAX_TEMPLATE}", metadata.len()),
                });
            }
            let mut source = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::open(&path).map_err(unreadable)?, MAX_TEMPLATE as u64 + 1),
                &mut source,
            )
            .map_err(unreadable)?;
            sources.push((name.to_owned(), source));
        }
        let mut templates = PromptTemplates::new();
        templates.add_all(sources.iter().map(|(name, source)| (name.as_str(), source.as_str())))?;
        Ok(templates)
    }

    /// Whether a template is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tera.get_template_names().any(|known| known == name)
    }

    /// The templates' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tera.get_template_names().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Renders `name` with `variables`, a JSON object.
    pub fn render(&self, name: &str, variables: &serde_json::Value) -> Result<String, Error> {
        if !self.contains(name) {
            return Err(Error::NotFound {
                name: name.to_owned(),
                version: None,
            });
        }
        let context = tera::Context::from_value(variables.clone()).map_err(|_| Error::Template {
            template: name.to_owned(),
            message: "the variables must be a JSON object".into(),
        })?;
        let mut output = BoundedOutput(Vec::new());
        self.tera
            .render_to(name, &context, &mut output)
            .map_err(|error| template_error(name, &error))?;
        String::from_utf8(output.0).map_err(|_| Error::Template {
            template: name.to_owned(),
            message: "it rendered text that is not UTF-8".into(),
        })
    }
}

/// A render's output, refusing to grow past [`MAX_OUTPUT`].
struct BoundedOutput(Vec<u8>);

impl std::io::Write for BoundedOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "the text rendered is over {MAX_OUTPUT} bytes"
            )));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Adds to `names` the templates `nodes` include, in nested bodies too.
fn collect_includes(nodes: &[Node], names: &mut Vec<String>) {
    for node in nodes {
        match node {
            Node::Include(_, included, _) => names.extend(included.iter().cloned()),
            Node::MacroDefinition(_, definition, _) => collect_includes(&definition.body, names),
            Node::FilterSection(_, section, _) => collect_includes(&section.body, names),
            Node::Block(_, block, _) => collect_includes(&block.body, names),
            Node::Forloop(_, forloop, _) => {
                collect_includes(&forloop.body, names);
                if let Some(empty) = &forloop.empty_body {
                    collect_includes(empty, names);
                }
            }
            Node::If(branches, _) => {
                for (_, _, body) in &branches.conditions {
                    collect_includes(body, names);
                }
                if let Some((_, body)) = &branches.otherwise {
                    collect_includes(body, names);
                }
            }
            _ => {}
        }
    }
}

/// The typed error for what Tera said: an undefined variable names it, anything else gives Tera's
/// whole chain of causes.
fn template_error(template: &str, error: &tera::Error) -> Error {
    let mut messages = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    for message in &messages {
        // Tera: "Variable `user.name` not found in context while rendering 'rules'", also inside
        // longer messages ("Variable a[idx] can not be evaluated because: Variable `idx` ...").
        if let Some(start) = message.find("Variable `")
            && let Some((variable, rest)) = message[start + "Variable `".len()..].split_once("` not found in context")
        {
            let rendering = rest
                .split_once("while rendering '")
                .and_then(|(_, name)| name.split_once('\''))
                .map_or(template, |(name, _)| name);
            return Error::UndefinedVariable {
                template: rendering.to_owned(),
                variable: variable.to_owned(),
            };
        }
    }
    Error::Template {
        template: template.to_owned(),
        message: messages.join(": "),
    }
}
