//! `kai.Model` (a provider's chat model, chosen by string) and `kai.testing.ScriptedModel`.

use std::sync::Arc;
use std::time::Duration;

use kai_core::ChatModel;
use kai_providers::{HttpConfig, ModelSpec};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::error::{config_error, core_error};
use crate::state::{from_python, to_python};

/// A chat model of a provider, chosen by a string such as `"openai:gpt-4o-mini"`,
/// `"anthropic:claude-sonnet-4-5"` or `"llamacpp:qwen@http://127.0.0.1:8080/v1"`.
///
/// Keys come from the provider's usual environment variable unless `api_key` is given; a spec with
/// its own base URL needs its key given with it.
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct Model {
    pub(crate) inner: Arc<dyn ChatModel>,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (spec, *, api_key = None, base_url = None, timeout = None, max_retries = None))]
    fn new(
        spec: &str,
        api_key: Option<String>,
        base_url: Option<String>,
        timeout: Option<f64>,
        max_retries: Option<u32>,
    ) -> PyResult<Self> {
        let mut spec: ModelSpec = spec.parse().map_err(|error| core_error(&error))?;
        if let Some(key) = api_key {
            spec = spec.with_api_key(key);
        }
        if base_url.is_some() {
            spec.base_url = base_url;
        }
        let mut http = HttpConfig::default();
        if let Some(seconds) = timeout {
            http.timeout = Some(seconds_to_duration(seconds)?);
        }
        if let Some(retries) = max_retries {
            http.retry.max_retries = retries;
        }
        let inner = kai_providers::model_from_spec(&spec, http).map_err(|error| core_error(&error))?;
        Ok(Self { inner })
    }

    /// The model's name at its provider.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    fn __repr__(&self) -> String {
        format!("Model({:?})", self.inner.name())
    }
}

/// A model that replays scripted answers, so agents can be tested offline and deterministically.
///
/// Each entry is a text answer (`str`) or a dict: `{"tool_call": name, "arguments": {...}}`,
/// `{"tool_calls": [[name, {...}], ...]}` or `{"error": {"kind": "rate_limited", ...}}` (an error in
/// the serde form of kAI errors). The `kai.testing` helpers build these dicts. Requests are kept for
/// `requests()` unless `record_requests=False` (for benchmarks and long runs).
#[pyclass(module = "kai._kai", frozen)]
pub(crate) struct ScriptedModel {
    pub(crate) inner: kai_core::testing::ScriptedModel,
}

#[pymethods]
impl ScriptedModel {
    #[new]
    #[pyo3(signature = (responses, *, repeat = false, json_schema = true, delay = None, record_requests = true))]
    fn new(
        responses: &Bound<'_, PyList>,
        repeat: bool,
        json_schema: bool,
        delay: Option<f64>,
        record_requests: bool,
    ) -> PyResult<Self> {
        let mut model = kai_core::testing::ScriptedModel::new()
            .record_requests(record_requests)
            .json_schema_support(json_schema);
        if repeat {
            model = model.repeat();
        }
        let delay = delay.map(seconds_to_duration).transpose()?;
        for response in responses.iter() {
            model = scripted_turn(model, &response)?;
            if let Some(delay) = delay {
                model = model.delayed(delay);
            }
        }
        Ok(Self { inner: model })
    }

    /// The requests the model received, as dicts (messages, tools, options).
    fn requests<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.requests())
    }

    /// How many scripted answers are left.
    #[getter]
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn __repr__(&self) -> String {
        format!("ScriptedModel(remaining={})", self.inner.remaining())
    }
}

/// Adds one scripted answer, described as the class documentation says.
fn scripted_turn(
    model: kai_core::testing::ScriptedModel,
    response: &Bound<'_, PyAny>,
) -> PyResult<kai_core::testing::ScriptedModel> {
    if let Ok(text) = response.cast::<PyString>() {
        return Ok(model.text(text.to_cow()?));
    }
    let Ok(entry) = response.cast::<PyDict>() else {
        return Err(config_error("a scripted answer is a str or a dict"));
    };
    if let Some(name) = entry.get_item("tool_call")? {
        let arguments = match entry.get_item("arguments")? {
            Some(arguments) => from_python(&arguments)?,
            None => serde_json::json!({}),
        };
        return Ok(model.tool_call(name.extract::<String>()?, arguments));
    }
    if let Some(calls) = entry.get_item("tool_calls")? {
        let calls: Vec<(String, serde_json::Value)> = from_python(&calls)?;
        return Ok(model.tool_calls(calls));
    }
    if let Some(error) = entry.get_item("error")? {
        let error: kai_core::Error = from_python(&error)?;
        return Ok(model.fail(error));
    }
    Err(config_error(
        "a scripted answer dict has one of the keys tool_call, tool_calls or error",
    ))
}

/// The model an agent is given: a spec string, a `Model` or a `ScriptedModel`.
#[derive(FromPyObject)]
pub(crate) enum ModelArg<'py> {
    /// `"provider:model"`.
    Spec(String),
    /// A configured provider model.
    Model(Bound<'py, Model>),
    /// A scripted test model.
    Scripted(Bound<'py, ScriptedModel>),
}

impl ModelArg<'_> {
    /// The chat model to run.
    pub(crate) fn into_model(self) -> PyResult<Arc<dyn ChatModel>> {
        Ok(match self {
            ModelArg::Spec(spec) => kai_providers::model_from_str(&spec).map_err(|error| core_error(&error))?,
            ModelArg::Model(model) => Arc::clone(&model.get().inner),
            ModelArg::Scripted(model) => Arc::new(model.get().inner.clone()),
        })
    }
}

/// Seconds from Python as a duration; negative, NaN or infinite ones are refused.
pub(crate) fn seconds_to_duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| config_error(format!("{seconds} is not a duration in seconds")))
}
