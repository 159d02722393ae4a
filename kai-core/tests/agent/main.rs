//! Agent behaviour, end to end, with a scripted model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod constrained;
mod durable;
mod failures;
mod hooks;
mod loop_basics;
mod multi_agent;
mod streaming;
mod structured;
mod support;
mod tool_context;
mod tool_macro;
