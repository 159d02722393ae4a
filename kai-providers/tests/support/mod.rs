//! A loopback HTTP server that replies exactly as scripted, faults included (resets, cut streams,
//! garbage, hangs), and records every request it received.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod faults;
use tokio::net::{TcpListener, TcpStream};

/// Quick retries and short timeouts, so fault tests run fast.
pub fn fast_http() -> kai_providers::HttpConfig {
    kai_providers::HttpConfig {
        retry: kai_providers::RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        timeout: Some(Duration::from_secs(5)),
        stream_idle_timeout: Some(Duration::from_secs(2)),
        ..kai_providers::HttpConfig::default()
    }
}

/// One scripted reply.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response with a Content-Length.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// These bytes, written in pieces with pauses, then the connection is closed.
    Raw(Vec<(Vec<u8>, Duration)>),
    /// The connection is closed without a response.
    Reset,
    /// The connection stays open and silent.
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Http {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn status(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Reply::Http {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// A 200 event stream carrying each payload as one `data:` event.
    pub fn sse(payloads: &[&str]) -> Self {
        let mut body = String::new();
        for payload in payloads {
            body.push_str("data: ");
            body.push_str(payload);
            body.push_str("\n\n");
        }
        Reply::Http {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: body.into_bytes(),
        }
    }

    /// A 200 response whose body is cut off: the head, then `body`, then the connection closes.
    pub fn cut(content_type: &str, body: &str) -> Self {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n");
        Reply::Raw(vec![
            (head.into_bytes(), Duration::ZERO),
            (body.as_bytes().to_vec(), Duration::ZERO),
        ])
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

pub struct FaultServer {
    pub addr: SocketAddr,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FaultServer {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (Arc::clone(&replies), Arc::clone(&requests));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (r, q) = (Arc::clone(&r), Arc::clone(&q));
                tokio::spawn(serve(socket, r, q));
            }
        });
        Self {
            addr,
            replies,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn remaining(&self) -> usize {
        self.replies.lock().unwrap().len()
    }
}

async fn serve(mut socket: TcpStream, replies: Arc<Mutex<VecDeque<Reply>>>, requests: Arc<Mutex<Vec<Recorded>>>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    requests.lock().unwrap().push(request);
    let reply = replies.lock().unwrap().pop_front();
    match reply {
        None => {
            let _ = socket
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 18\r\nconnection: close\r\n\r\nno reply scripted!")
                .await;
        }
        Some(Reply::Http { status, headers, body }) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
        Some(Reply::Raw(pieces)) => {
            for (bytes, pause) in pieces {
                tokio::time::sleep(pause).await;
                if socket.write_all(&bytes).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
            }
        }
        Some(Reply::Reset) => {
            // A zero linger makes the close a reset (RST), as a crashed peer's would be.
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(socket);
            return;
        }
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let _ = socket.shutdown().await;
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// A structured-output type with the shapes that trip providers' schema rules: an optional field, a
/// list, an enum, an unsigned integer and a nested struct.
#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
pub struct Trip {
    /// Where to.
    pub destination: String,
    /// Nights, if known.
    pub nights: Option<u32>,
    /// Who travels.
    pub travellers: Vec<String>,
    /// How.
    pub mode: TravelMode,
    /// Where to stay.
    pub stay: Stay,
}

/// How one travels.
#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TravelMode {
    /// By train.
    Train,
    /// By plane.
    Plane,
}

/// A place to stay.
#[derive(Debug, PartialEq, serde::Deserialize, schemars::JsonSchema)]
pub struct Stay {
    /// The hotel's name.
    pub hotel: String,
    /// Stars, 1 to 5.
    pub stars: u8,
}
