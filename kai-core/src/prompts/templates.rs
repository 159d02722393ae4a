//! Named templates rendered with Tera, strictly.

use std::path::Path;

use crate::error::Error;
use crate::prompts::{MAX_TEMPLATE, check_name};

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
/// // A variable the context lacks is an error naming it, not an empty string.
/// let error = templates.render("system", &json!({"user": {"name": "Ada"}})).unwrap_err();
/// assert!(matches!(error, kai_core::Error::UndefinedVariable { variable, .. } if variable == "language"));
/// ```
#[derive(Debug, Clone)]
pub struct PromptTemplates {
    tera: tera::Tera,
}

impl Default for PromptTemplates {
    fn default() -> Self {
        let mut tera = tera::Tera::default();
        // Prompts are not HTML: `<`, `&` and quotes stay as written.
        tera.autoescape_on(Vec::new());
        PromptTemplates { tera }
    }
}

impl PromptTemplates {
    /// No templates yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the template `name`, checking its syntax now.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), Error> {
        check_name(name)?;
        if source.len() > MAX_TEMPLATE {
            return Err(Error::Template {
                template: name.to_owned(),
                message: format!("it is {} bytes, over the limit of {MAX_TEMPLATE}", source.len()),
            });
        }
        self.tera
            .add_raw_template(name, source)
            .map_err(|error| template_error(name, &error))
    }

    /// The templates of a directory: each regular file whose name without its extension is a prompt
    /// name (`system.tera` is `system`); links and subdirectories are left out.
    pub fn from_dir(directory: impl AsRef<Path>) -> Result<Self, Error> {
        let directory = directory.as_ref();
        let unreadable = |error: std::io::Error| Error::Storage {
            message: format!("reading {}: {error}", directory.display()),
        };
        let mut templates = PromptTemplates::new();
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
            if templates.contains(name) {
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
            let source = std::fs::read_to_string(&path).map_err(unreadable)?;
            templates.add(name, &source)?;
        }
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
            return Err(Error::PromptNotFound {
                name: name.to_owned(),
                version: None,
            });
        }
        let context = tera::Context::from_value(variables.clone()).map_err(|_| Error::Template {
            template: name.to_owned(),
            message: "the variables must be a JSON object".into(),
        })?;
        self.tera
            .render(name, &context)
            .map_err(|error| template_error(name, &error))
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
        // Tera: "Variable `user.name` not found in context while rendering 'system'".
        if let Some(rest) = message.strip_prefix("Variable `")
            && let Some((variable, _)) = rest.split_once("` not found in context")
        {
            return Error::UndefinedVariable {
                template: template.to_owned(),
                variable: variable.to_owned(),
            };
        }
    }
    Error::Template {
        template: template.to_owned(),
        message: messages.join(": "),
    }
}
