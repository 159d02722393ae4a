//! The A2A server: the Agent Card and the JSON-RPC binding over HTTP/1.1 (hyper).

use std::convert::Infallible;
use std::sync::Arc;

use a2a_lf::{A2AError, AgentCapabilities, AgentCard, AgentInterface, AgentSkill, JsonRpcId, Message};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use kai_core::{Agent, CancellationToken};
use serde::Deserialize;

use super::tasks::Tasks;
use super::wire::{self, CARD_PATH};
use crate::error::Error;

type Body = BoxBody<Bytes, Infallible>;

/// An A2A server for one agent. See the [module](super) documentation.
///
/// ```no_run
/// # async fn example(agent: kai_core::Agent) -> Result<(), kai_klp::Error> {
/// use kai_klp::a2a::{A2aServer, agent_card};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.map_err(|e| kai_klp::Error::Io(e.to_string()))?;
/// let card = agent_card(&agent, "http://127.0.0.1:8080/", "Answers questions about orders.");
/// A2aServer::new(agent, card).serve(listener, kai_core::CancellationToken::new()).await
/// # }
/// ```
pub struct A2aServer {
    card: Arc<AgentCard>,
    tasks: Arc<Tasks>,
    max_body_bytes: usize,
    max_connections: usize,
    allowed_hosts: Option<Vec<String>>,
}

impl std::fmt::Debug for A2aServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aServer")
            .field("name", &self.card.name)
            .finish_non_exhaustive()
    }
}

/// An Agent Card for `agent` served at `url` (the JSON-RPC endpoint, as clients reach it): its name,
/// `description`, one skill per tool, streaming on, text in and out.
pub fn agent_card(agent: &Agent, url: &str, description: &str) -> AgentCard {
    let skills = agent
        .tools()
        .definitions()
        .iter()
        .map(|tool| AgentSkill {
            id: tool.name.clone(),
            name: tool.name.clone(),
            description: tool.description.clone(),
            tags: vec!["tool".into()],
            examples: None,
            input_modes: None,
            output_modes: None,
            security_requirements: None,
        })
        .collect();
    AgentCard {
        name: agent.name().to_owned(),
        description: description.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        supported_interfaces: vec![AgentInterface::new(url, a2a_lf::TRANSPORT_PROTOCOL_JSONRPC)],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: None,
            extended_agent_card: None,
        },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into()],
        skills,
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: None,
        security_requirements: None,
        signatures: None,
    }
}

/// `SendMessage` and `SendStreamingMessage` params.
#[derive(Deserialize)]
struct SendParams {
    message: Message,
    #[serde(default)]
    configuration: Option<SendConfiguration>,
}

/// What of a send's configuration is served.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendConfiguration {
    /// Answer with the task at once, while it runs.
    #[serde(default)]
    return_immediately: bool,
    /// Push notifications, which are not served.
    #[serde(default, alias = "pushNotificationConfig")]
    task_push_notification_config: Option<serde_json::Value>,
}

/// Starts the task a send asks for; whether to answer at once.
fn start(tasks: &Arc<Tasks>, params: serde_json::Value) -> Result<(super::tasks::Started, bool), A2AError> {
    let params = wire::params::<SendParams>(params)?;
    let configuration = params.configuration.unwrap_or(SendConfiguration {
        return_immediately: false,
        task_push_notification_config: None,
    });
    if configuration.task_push_notification_config.is_some() {
        return Err(A2AError::push_notification_not_supported());
    }
    Ok((tasks.send(params.message)?, configuration.return_immediately))
}

/// `GetTask` and `CancelTask` params.
#[derive(Deserialize)]
struct TaskParams {
    id: String,
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn rpc_error(id: JsonRpcId, error: &A2AError) -> Response<Body> {
    // JSON-RPC errors travel with HTTP 200, as the A2A SDKs send and expect them.
    json(StatusCode::OK, wire::failure(id, error))
}

impl A2aServer {
    /// A server for `agent`, describing itself with `card`.
    pub fn new(agent: Agent, card: AgentCard) -> Self {
        Self {
            card: Arc::new(card),
            tasks: Arc::new(Tasks::new(agent, 1_000, 1_000)),
            max_body_bytes: 1 << 20,
            max_connections: 256,
            allowed_hosts: None,
        }
    }

    /// This server taking requests addressed (`Host`) to `hosts` (names, or `name:port`) rather than
    /// to loopback names only: for a server others reach through a real name.
    pub fn with_allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let hosts: Vec<String> = hosts.into_iter().map(Into::into).collect();
        self.allowed_hosts = (!hosts.is_empty()).then_some(hosts);
        self
    }

    /// Whether a request is addressed to this server (`Host`), and not sent by a browser page
    /// (`Origin`): a web page on a name that resolves to loopback (DNS rebinding) must not reach it.
    fn addressed_here(&self, request: &Request<Incoming>) -> bool {
        if request.headers().contains_key(hyper::header::ORIGIN) {
            return false;
        }
        let Some(host) = request
            .headers()
            .get(hyper::header::HOST)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let name = host
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']').map(|(name, _)| name))
            .unwrap_or_else(|| host.split(':').next().unwrap_or_default());
        match &self.allowed_hosts {
            Some(hosts) => hosts.iter().any(|allowed| allowed == host || allowed == name),
            None => matches!(name, "localhost" | "127.0.0.1" | "::1"),
        }
    }

    /// This server keeping at most `tasks` tasks (1,000 unless set): finished ones are forgotten
    /// oldest first, and while all of them run or wait for input a new task is refused.
    pub fn with_max_tasks(mut self, tasks: usize) -> Self {
        self.tasks = Arc::new(Tasks::new(self.tasks.agent().clone(), tasks.max(1), 1_000));
        self
    }

    /// Serves on `listener` until `shutdown` is cancelled; then the runs under way are cancelled too.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
        let server = Arc::new(self);
        // The runs under way are cancelled when serving stops, however it stops.
        let _stop_runs = server.tasks.runs().clone().cancel_on_drop();
        let max_connections = server.max_connections;
        let service = hyper::service::service_fn(move |request| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        kai_core::serve::serve_http1(listener, shutdown, max_connections, service, "A2A").await;
        Ok(())
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if !self.addressed_here(&request) {
            return json(StatusCode::FORBIDDEN, b"{}".to_vec());
        }
        if request.method() == Method::GET && request.uri().path() == CARD_PATH {
            return json(StatusCode::OK, serde_json::to_vec(&*self.card).unwrap_or_default());
        }
        if request.method() != Method::POST {
            return json(StatusCode::NOT_FOUND, b"{}".to_vec());
        }
        let version = request
            .headers()
            .get(a2a_lf::SVC_PARAM_VERSION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("0.3")
            .to_owned();
        // The size is checked as the body arrives, before anything of it is parsed.
        let body = match Limited::new(request.into_body(), self.max_body_bytes).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return rpc_error(
                    JsonRpcId::Null,
                    &A2AError::invalid_request(format!("the body is over {} bytes", self.max_body_bytes)),
                );
            }
        };
        let call = match wire::read_call(&body) {
            Ok(call) => call,
            Err((id, error)) => return rpc_error(id, &error),
        };
        // Any 1.x: minor versions add, they do not change what is served.
        if version.split('.').next() != Some("1") {
            return rpc_error(call.id, &A2AError::version_not_supported(&version));
        }
        match call.method.as_str() {
            a2a_lf::methods::SEND_MESSAGE => self.send(call.id, call.params).await,
            a2a_lf::methods::SEND_STREAMING_MESSAGE => self.stream(call.id, call.params),
            a2a_lf::methods::GET_TASK => match wire::params::<TaskParams>(call.params) {
                Ok(params) => match self.tasks.get(&params.id) {
                    Ok(task) => json(StatusCode::OK, wire::success(call.id, &task)),
                    Err(error) => rpc_error(call.id, &error),
                },
                Err(error) => rpc_error(call.id, &error),
            },
            a2a_lf::methods::CANCEL_TASK => match wire::params::<TaskParams>(call.params) {
                Ok(params) => match self.tasks.cancel(&params.id).await {
                    Ok(task) => json(StatusCode::OK, wire::success(call.id, &task)),
                    Err(error) => rpc_error(call.id, &error),
                },
                Err(error) => rpc_error(call.id, &error),
            },
            method if a2a_lf::methods::is_valid(method) => rpc_error(
                call.id,
                &A2AError::unsupported_operation(format!("{method} is not served")),
            ),
            method => rpc_error(call.id, &A2AError::method_not_found(method)),
        }
    }

    /// `SendMessage`: runs the task until it stops (done, failed, cancelled, or waiting for input)
    /// and answers with the task; with `returnImmediately`, answers with it at once.
    async fn send(&self, id: JsonRpcId, params: serde_json::Value) -> Response<Body> {
        let (started, at_once) = match start(&self.tasks, params) {
            Ok(started) => started,
            Err(error) => return rpc_error(id, &error),
        };
        if at_once {
            return json(
                StatusCode::OK,
                wire::success(id, &serde_json::json!({ "task": started.task })),
            );
        }
        // The updates are not needed: the run's last word is its task.
        drop(started.updates);
        match started.finished.await {
            Ok(task) => json(StatusCode::OK, wire::success(id, &serde_json::json!({ "task": task }))),
            Err(_) => rpc_error(id, &A2AError::internal("the task's run ended without a word")),
        }
    }

    /// `SendStreamingMessage`: the task's updates as Server-Sent Events, each a JSON-RPC response,
    /// until the task stops.
    fn stream(&self, id: JsonRpcId, params: serde_json::Value) -> Response<Body> {
        let started = match start(&self.tasks, params) {
            Ok((started, _)) => started,
            Err(error) => return rpc_error(id, &error),
        };
        let frames = tokio_stream_of(started.updates).map(move |update| {
            let json = wire::success(id.clone(), &update);
            Ok::<_, Infallible>(Frame::data(Bytes::from(wire::sse_frame(&json))))
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        response
    }
}

/// The updates as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}
