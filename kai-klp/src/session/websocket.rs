//! Frames over WebSocket on native targets (feature `websocket`): one binary message per frame.

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{FrameTransport, MAX_FRAME_BYTES, broken, fits};
use crate::error::Error;

/// Frames over a WebSocket: each frame is one binary message (feature `websocket`). The same type
/// exists on wasm32, over the browser's (or Node's) `WebSocket`, so a browser agent and a native one
/// speak the same wire. Messages over [`MAX_FRAME_BYTES`] are refused by the WebSocket layer before
/// they are buffered; a text message breaks the session.
///
/// ```no_run
/// # async fn demo(me: kai_klp::Identity, server: kai_klp::Did) -> Result<(), kai_klp::Error> {
/// use kai_klp::session::{WebSocketTransport, connect};
///
/// let transport = WebSocketTransport::connect("ws://127.0.0.1:7001/klp").await?;
/// let mut session = connect(me, Some(&server), transport).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocketTransport {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

fn io(what: &str, error: WsError) -> Error {
    Error::Io(format!("{what}: {error}"))
}

impl WebSocketTransport {
    /// Opens a WebSocket to `url` (`ws://` or `wss://`), with Nagle's algorithm off.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config()), true)
            .await
            .map_err(|e| io("opening the WebSocket", e))?;
        Ok(Self { socket })
    }

    /// Completes the server side of a WebSocket handshake on an accepted TCP connection.
    pub async fn accept(stream: TcpStream) -> Result<Self, Error> {
        // Frames are whole messages: do not hold small ones back (see `TcpTransport::new`).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let socket = tokio_tungstenite::accept_async_with_config(MaybeTlsStream::Plain(stream), Some(config()))
            .await
            .map_err(|e| io("accepting the WebSocket", e))?;
        Ok(Self { socket })
    }
}

#[kai_core::async_trait]
impl FrameTransport for WebSocketTransport {
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        fits(frame)?;
        match self.socket.send(Message::Binary(Bytes::copy_from_slice(frame))).await {
            Ok(()) => Ok(()),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Err(Error::SessionClosed),
            Err(error) => Err(io("sending a frame", error)),
        }
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            match self.socket.next().await {
                None | Some(Ok(Message::Close(_))) => return Err(Error::SessionClosed),
                Some(Ok(Message::Binary(frame))) => return Ok(frame.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => return Err(broken("a text message arrived on a KLP WebSocket")),
                Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => return Err(Error::SessionClosed),
                Some(Err(WsError::Io(error))) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(Error::SessionClosed);
                }
                Some(Err(WsError::Capacity(error))) => {
                    return Err(broken(format!("the peer sent an oversized message: {error}")));
                }
                Some(Err(error)) => return Err(io("receiving a frame", error)),
            }
        }
    }
}
