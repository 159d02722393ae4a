//! Frames over TCP (feature `tcp`, native targets).

use kai_core::{BoxFuture, boxed};

use super::{FrameTransport, MAX_FRAME_BYTES, broken, fits};
use crate::error::Error;

/// Frames over TCP: each frame is a 4-byte big-endian length and that many bytes (feature `tcp`).
#[derive(Debug)]
pub struct TcpTransport {
    stream: tokio::net::TcpStream,
}

impl TcpTransport {
    /// Frames over an open connection. Turns off Nagle's algorithm: frames are whole messages, and
    /// holding a small one back until the previous is acknowledged costs a delayed-ACK wait (tens of
    /// milliseconds) per handshake step.
    pub fn new(stream: tokio::net::TcpStream) -> Self {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        Self { stream }
    }
}

impl FrameTransport for TcpTransport {
    fn send<'a>(&'a mut self, frame: &'a [u8]) -> BoxFuture<'a, Result<(), Error>> {
        use tokio::io::AsyncWriteExt as _;
        boxed(async move {
            fits(frame)?;
            // One write per frame: the length and the bytes leave together.
            let mut message = Vec::with_capacity(4 + frame.len());
            message.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            message.extend_from_slice(frame);
            let io = |e: std::io::Error| Error::Io(format!("sending a frame: {e}"));
            self.stream.write_all(&message).await.map_err(io)?;
            self.stream.flush().await.map_err(io)
        })
    }

    fn recv(&mut self) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        use tokio::io::AsyncReadExt as _;
        boxed(async move {
            let mut length = [0u8; 4];
            match self.stream.read_exact(&mut length).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Error::SessionClosed),
                Err(e) => return Err(Error::Io(format!("receiving a frame: {e}"))),
            }
            let length = u32::from_be_bytes(length) as usize;
            // Refuse before allocating: a garbage length cannot make us reserve gigabytes.
            if length > MAX_FRAME_BYTES {
                return Err(broken(format!("the peer announced a {length}-byte frame")));
            }
            let mut frame = vec![0u8; length];
            self.stream
                .read_exact(&mut frame)
                .await
                .map_err(|e| Error::Io(format!("receiving a frame: {e}")))?;
            Ok(frame)
        })
    }
}
