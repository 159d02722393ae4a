//! Personas: what an agent is built from, kept as versions.

use serde::{Deserialize, Serialize};

use crate::agent::AgentBuilder;
use crate::error::Error;
use crate::prompts::{MAX_TEMPLATE, PromptTemplates};
use crate::tool::ToolSet;

/// Model settings a persona carries. The model itself is named (a provider's spec, such as
/// `openai:gpt-4o-mini`) for the caller to resolve: kai-core knows no providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// The model to build the agent on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The most tokens an answer may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The most steps a run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
}

/// A persona: an instructions template with default variables, model settings and the tools the
/// agent may use.
///
/// ```
/// use kai_core::prompts::Persona;
/// use kai_core::testing::ScriptedModel;
/// use kai_core::{Agent, ToolSet};
/// use serde_json::json;
///
/// let persona = Persona::new("You are {{ name }}, a {{ tone }} assistant.")
///     .with_variable("name", "Kai")
///     .with_variable("tone", "patient");
/// let builder = persona
///     .apply(Agent::builder(ScriptedModel::new().text("hi")), &ToolSet::new(), &json!({"tone": "brisk"}))
///     .unwrap();
/// let agent = builder.build().unwrap();
/// assert_eq!(persona.instructions_for(&json!({"tone": "brisk"})).unwrap(), "You are Kai, a brisk assistant.");
/// # let _ = agent;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persona {
    /// The instructions, a template (see [`PromptTemplates`]).
    pub instructions: String,
    /// Values for the template's variables, which those given at build time override.
    #[serde(default)]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// Model settings.
    #[serde(default)]
    pub model: ModelSettings,
    /// The names of the tools the agent may use; none when empty.
    #[serde(default)]
    pub tools: Vec<String>,
}

impl Persona {
    /// A persona with these instructions, no variables, no settings and no tools.
    pub fn new(instructions: impl Into<String>) -> Self {
        Persona {
            instructions: instructions.into(),
            ..Persona::default()
        }
    }

    /// This persona with a default value for a variable.
    pub fn with_variable(mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// This persona with these model settings.
    pub fn with_model(mut self, settings: ModelSettings) -> Self {
        self.model = settings;
        self
    }

    /// This persona allowed these tools.
    pub fn with_tools(mut self, tools: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tools = tools.into_iter().map(Into::into).collect();
        self
    }

    /// Checks that the instructions parse and are not too long.
    pub fn check(&self) -> Result<(), Error> {
        self.templates().map(|_| ())
    }

    /// The instructions rendered with the persona's variables, overridden by `variables` (an object).
    pub fn instructions_for(&self, variables: &serde_json::Value) -> Result<String, Error> {
        let mut merged = self.variables.clone();
        match variables {
            serde_json::Value::Object(given) => merged.extend(given.clone()),
            serde_json::Value::Null => {}
            _ => {
                return Err(Error::Config {
                    message: "a persona's variables must be a JSON object".into(),
                });
            }
        }
        self.templates()?
            .render(INSTRUCTIONS, &serde_json::Value::Object(merged))
    }

    /// `builder` made into this persona's agent: its instructions rendered with `variables`, its
    /// model settings, and of `tools` the ones it allows (each must be there).
    pub fn apply(
        &self,
        builder: AgentBuilder,
        tools: &ToolSet,
        variables: &serde_json::Value,
    ) -> Result<AgentBuilder, Error> {
        let mut allowed = ToolSet::new();
        for name in &self.tools {
            let tool = tools.get(name).ok_or_else(|| Error::Config {
                message: format!("the persona allows the tool {name:?}, which the tools given do not have"),
            })?;
            allowed.add_shared(tool.clone())?;
        }
        let mut builder = builder.instructions(self.instructions_for(variables)?).tools(&allowed);
        if let Some(temperature) = self.model.temperature {
            builder = builder.temperature(temperature);
        }
        if let Some(max_tokens) = self.model.max_tokens {
            builder = builder.max_tokens(max_tokens);
        }
        if let Some(max_steps) = self.model.max_steps {
            builder = builder.max_steps(max_steps);
        }
        Ok(builder)
    }

    fn templates(&self) -> Result<PromptTemplates, Error> {
        if self.instructions.len() > MAX_TEMPLATE {
            return Err(Error::Template {
                template: INSTRUCTIONS.into(),
                message: format!("the instructions are over {MAX_TEMPLATE} bytes"),
            });
        }
        let mut templates = PromptTemplates::new();
        templates.add(INSTRUCTIONS, &self.instructions)?;
        Ok(templates)
    }
}

/// The template name a persona's instructions render under, in errors.
const INSTRUCTIONS: &str = "instructions";

#[cfg(not(target_arch = "wasm32"))]
pub use store::{PersonaStore, PersonaVersion};

#[cfg(not(target_arch = "wasm32"))]
mod store {
    use std::path::Path;

    use serde::{Deserialize, Serialize};

    use super::Persona;
    use crate::error::Error;

    use crate::prompts::versioned::{Record, Versions, content_hash};
    use crate::time::now_ms;

    /// One version of a persona.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PersonaVersion {
        /// The persona's name.
        pub name: String,
        /// The version, counted from 1.
        pub version: u32,
        /// Who saved it.
        pub author: String,
        /// Why, in a few words.
        pub note: String,
        /// When, in milliseconds since the Unix epoch.
        pub created_at_ms: u64,
        /// `sha256:` and the hex SHA-256 of the persona's JSON.
        pub content_hash: String,
        /// The persona.
        pub persona: Persona,
    }

    impl Record for PersonaVersion {
        fn name(&self) -> &str {
            &self.name
        }
        fn version(&self) -> u32 {
            self.version
        }
        fn hash_matches(&self) -> bool {
            persona_hash(&self.persona).is_ok_and(|hash| hash == self.content_hash)
        }
        fn diff_text(&self) -> Result<String, Error> {
            serde_json::to_string_pretty(&self.persona).map_err(|error| Error::Storage {
                message: format!("encoding a persona: {error}"),
            })
        }
    }

    fn persona_hash(persona: &Persona) -> Result<String, Error> {
        let json = serde_json::to_vec(persona).map_err(|error| Error::Storage {
            message: format!("encoding a persona: {error}"),
        })?;
        Ok(content_hash(&json))
    }

    /// Personas kept in a directory, each save a new immutable version, as prompts are in a
    /// [`PromptStore`](crate::prompts::PromptStore).
    #[derive(Debug, Clone)]
    pub struct PersonaStore {
        versions: Versions,
    }

    impl PersonaStore {
        /// The store in `root`, made if missing.
        pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
            Ok(PersonaStore {
                versions: Versions::open(root.as_ref())?,
            })
        }

        /// Saves `persona` as the next version of `name` (checking its instructions first).
        pub fn save(&self, name: &str, persona: &Persona, author: &str, note: &str) -> Result<PersonaVersion, Error> {
            persona.check()?;
            let content_hash = persona_hash(persona)?;
            self.versions.save(name, author, note, |version| PersonaVersion {
                name: name.to_owned(),
                version,
                author: author.to_owned(),
                note: note.to_owned(),
                created_at_ms: now_ms(),
                content_hash,
                persona: persona.clone(),
            })
        }

        /// A version of `name`: the one given, or the latest.
        pub fn get(&self, name: &str, version: Option<u32>) -> Result<PersonaVersion, Error> {
            self.versions.get(name, version)
        }

        /// Every version of `name`, oldest first.
        pub fn history(&self, name: &str) -> Result<Vec<PersonaVersion>, Error> {
            self.versions.history(name)
        }

        /// The personas the store holds, sorted.
        pub fn names(&self) -> Result<Vec<String>, Error> {
            self.versions.names()
        }

        /// A unified diff of version `from` to version `to` of `name`, as pretty JSON.
        pub fn diff(&self, name: &str, from: u32, to: u32) -> Result<String, Error> {
            self.versions.diff::<PersonaVersion>(name, from, to)
        }

        /// Makes version `to` the latest again, as a new version.
        pub fn roll_back(&self, name: &str, to: u32, author: &str) -> Result<PersonaVersion, Error> {
            let old = self.get(name, Some(to))?;
            self.save(name, &old.persona, author, &format!("roll back to version {to}"))
        }
    }
}
