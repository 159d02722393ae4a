//! The native core of the `kai` Python package: kAI's agents, models and tools, exposed with PyO3.
//!
//! The pure-Python part of the package (`python/kai`) gives the Pythonic API on top: tools from plain
//! functions and their type hints, structured output into dataclasses and Pydantic models, typed
//! events. Errors become Python exceptions in one place, the `error` module.

use pyo3::prelude::*;

mod agent;
mod bridge;
mod call;
mod error;
mod hook;
mod klp;
mod memory;
mod model;
mod state;
mod tool;

/// The native module, imported by the `kai` package as `kai._kai`.
#[pymodule]
fn _kai(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<agent::Agent>()?;
    module.add_class::<agent::Conversation>()?;
    module.add_class::<agent::EventStream>()?;
    module.add_class::<hook::Hook>()?;
    module.add_class::<memory::EmbeddedStore>()?;
    module.add_class::<memory::EmbeddingModel>()?;
    module.add_class::<memory::Retriever>()?;
    module.add_class::<memory::Vault>()?;
    module.add_class::<memory::VectorIndex>()?;
    module.add_class::<model::Model>()?;
    module.add_class::<model::ScriptedModel>()?;
    module.add_class::<state::RunState>()?;
    module.add_class::<tool::Tool>()?;
    module.add_class::<tool::ToolContext>()?;
    module.add_function(wrap_pyfunction!(bridge::_shutdown, module)?)?;
    module.add_class::<klp::AuditLog>()?;
    module.add_class::<klp::Identity>()?;
    module.add_class::<klp::Mailbox>()?;
    module.add_class::<klp::Verifier>()?;
    module.add_function(wrap_pyfunction!(klp::did_document, module)?)?;
    module.add_function(wrap_pyfunction!(klp::invoke_token, module)?)?;
    module.add_function(wrap_pyfunction!(klp::issue_token, module)?)?;
    module.add_function(wrap_pyfunction!(klp::seal, module)?)?;
    module.add_function(wrap_pyfunction!(klp::token_id, module)?)?;
    module.add_function(wrap_pyfunction!(klp::verify_audit_log, module)?)?;
    module.add_function(wrap_pyfunction!(klp::verify_signature, module)?)?;
    error::register(module)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
