//! Frames over TCP (feature `tcp`, native targets).

use super::{FrameTransport, MAX_FRAME_BYTES, broken, fits};
use crate::error::Error;

/// Frames over TCP: each frame is a 4-byte big-endian length and that many bytes (feature `tcp`).
/// Receiving is cancel-safe: bytes read before a `recv` future is dropped stay buffered for the next.
#[derive(Debug)]
pub struct TcpTransport {
    stream: tokio::net::TcpStream,
    /// Bytes received but not yet returned as a frame.
    buffer: Vec<u8>,
}

impl TcpTransport {
    /// Frames over an open connection. Turns off Nagle's algorithm: frames are whole messages, and
    /// holding a small one back until the previous is acknowledged costs a delayed-ACK wait (tens of
    /// milliseconds) per handshake step.
    pub fn new(stream: tokio::net::TcpStream) -> Self {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        Self {
            stream,
            buffer: Vec::new(),
        }
    }
}

#[kai_core::async_trait]
impl FrameTransport for TcpTransport {
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt as _;

        fits(frame)?;
        // One write per frame: the length and the bytes leave together.
        let mut message = Vec::with_capacity(4 + frame.len());
        message.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        message.extend_from_slice(frame);
        let io = |e: std::io::Error| Error::Io(format!("sending a frame: {e}"));
        self.stream.write_all(&message).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        use tokio::io::AsyncReadExt as _;

        loop {
            if let Some(header) = self.buffer.first_chunk::<4>() {
                let length = u32::from_be_bytes(*header) as usize;
                // Refuse before reading on: a garbage length cannot make us buffer gigabytes.
                if length > MAX_FRAME_BYTES {
                    return Err(broken(format!("the peer announced a {length}-byte frame")));
                }
                if self.buffer.len() >= 4 + length {
                    let frame = self.buffer[4..4 + length].to_vec();
                    self.buffer.drain(..4 + length);
                    return Ok(frame);
                }
            }
            // `read_buf` is cancel-safe: either it appended bytes to the buffer or it read nothing.
            self.buffer
                .reserve(MAX_FRAME_BYTES + 4 - self.buffer.len().min(MAX_FRAME_BYTES + 4));
            match self.stream.read_buf(&mut self.buffer).await {
                // A closed connection, between frames or in the middle of one.
                Ok(0) => return Err(Error::SessionClosed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(Error::SessionClosed),
                Err(e) => return Err(Error::Io(format!("receiving a frame: {e}"))),
            }
        }
    }
}
