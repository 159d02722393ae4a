//! Prompts as named, versioned templates (feature `prompts`).
//!
//! - [`PromptTemplates`]: templates rendered with [Tera](https://keats.github.io/tera/) (Jinja2's
//!   syntax), strictly: a variable the context lacks is [`Error::UndefinedVariable`](crate::Error::UndefinedVariable)
//!   naming it, not an empty string (except as an `{% if %}` condition, which Tera takes as false).
//!   Templates include one another (`{% include "header" %}`), come from strings or a directory, and
//!   are never HTML-escaped. Templates are trusted code: they cannot read the environment
//!   (`get_env`), loop without end over `range` or render more than [`MAX_OUTPUT`] bytes, but a
//!   recursive macro is theirs to avoid.
//! - [`PromptStore`]: a directory of prompts where each save is a new, immutable version with its
//!   author, note, time and content hash; the latest or a pinned version, history, diffs, roll-back.
//! - [`PromptRef`]: `prompt://name` or `prompt://name@3`, the form an agent's instructions can take
//!   ([`PromptStore::resolve_instructions`]).
//! - [`Persona`]: an instructions template with default variables, model settings and allowed tools,
//!   that an agent is built from ([`Persona::apply`]); [`PersonaStore`] keeps personas as versions.

mod persona;
mod reference;
#[cfg(not(target_arch = "wasm32"))]
mod store;
mod templates;
#[cfg(not(target_arch = "wasm32"))]
mod versioned;

pub use persona::{ModelSettings, Persona};
#[cfg(not(target_arch = "wasm32"))]
pub use persona::{PersonaStore, PersonaVersion};
pub use reference::PromptRef;
#[cfg(not(target_arch = "wasm32"))]
pub use store::{PromptStore, PromptVersion};
pub use templates::PromptTemplates;

/// The largest template accepted, in bytes.
pub const MAX_TEMPLATE: usize = 1 << 20;

/// The longest text a render may produce, in bytes.
pub const MAX_OUTPUT: usize = 1 << 20;

/// The longest author or note a version may have, in bytes.
pub const MAX_NOTE: usize = 4096;

/// Checks a prompt's name: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting with `.`, so that it is also a
/// file name.
pub(crate) fn check_name(name: &str) -> Result<(), crate::Error> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fits {
        Ok(())
    } else {
        Err(crate::Error::Config {
            message: format!("{name:?} is not a prompt name: 1 to 64 of A-Z a-z 0-9 _ - ., not starting with ."),
        })
    }
}
