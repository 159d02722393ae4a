//! Frames over the host's `WebSocket` on wasm32 (feature `websocket`): browsers, and Node with a global
//! `WebSocket` (Node 22, or Node 20 with `--experimental-websocket`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::StreamExt as _;
use futures::channel::{mpsc, oneshot};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::{FrameTransport, MAX_FRAME_BYTES, broken, fits};
use crate::error::Error;

/// How many received frames may wait for `recv` before the session is broken: the host buffers a
/// message before we see it, so this (with the frame size limit) bounds what a fast peer can make us
/// hold.
const MAX_QUEUED_FRAMES: usize = 256;

/// What the socket's callbacks report.
enum Incoming {
    Frame(Vec<u8>),
    Broken(String),
    Closed,
}

/// Frames over a WebSocket: each frame is one binary message (feature `websocket`). On wasm32 this
/// uses the host's `WebSocket`; the native type of the same name speaks the same wire.
pub struct WebSocketTransport {
    socket: WebSocket,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Frames queued in `incoming` and not yet received.
    queued: Rc<Cell<usize>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_open: Closure<dyn FnMut(Event)>,
}

impl std::fmt::Debug for WebSocketTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketTransport")
            .field("url", &self.socket.url())
            .finish()
    }
}

fn js_error(what: &str, error: &wasm_bindgen::JsValue) -> Error {
    Error::Io(format!("{what}: {error:?}"))
}

impl WebSocketTransport {
    /// Opens a WebSocket to `url` (`ws://` or `wss://`) and waits until it is open.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let socket = WebSocket::new(url).map_err(|e| js_error("opening the WebSocket", &e))?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let (frames, incoming) = mpsc::unbounded();
        let (opened, open) = oneshot::channel::<Result<(), String>>();
        let opened = Rc::new(RefCell::new(Some(opened)));

        let queued = Rc::new(Cell::new(0usize));
        let (sender, count, closer) = (frames.clone(), Rc::clone(&queued), socket.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if count.get() > MAX_QUEUED_FRAMES {
                return; // already broken: the reader will see that first
            }
            count.set(count.get() + 1);
            if count.get() > MAX_QUEUED_FRAMES {
                let reason = format!("more than {MAX_QUEUED_FRAMES} frames arrived unread");
                let _ = sender.unbounded_send(Incoming::Broken(reason));
                let _ = closer.close();
                return;
            }
            let item = match event.data().dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buffer) if buffer.byte_length() as usize <= MAX_FRAME_BYTES => {
                    Incoming::Frame(js_sys::Uint8Array::new(&buffer).to_vec())
                }
                Ok(buffer) => Incoming::Broken(format!("the peer sent a {}-byte frame", buffer.byte_length())),
                Err(_) => Incoming::Broken("a text message arrived on a KLP WebSocket".into()),
            };
            let _ = sender.unbounded_send(item);
        });
        let (sender, pending) = (frames.clone(), Rc::clone(&opened));
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if let Some(opened) = pending.borrow_mut().take() {
                let _ = opened.send(Err(format!("closed before opening (code {})", event.code())));
            }
            let _ = sender.unbounded_send(Incoming::Closed);
        });
        let (sender, pending) = (frames, Rc::clone(&opened));
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(opened) = pending.borrow_mut().take() {
                let _ = opened.send(Err("the connection failed".into()));
            }
            let _ = sender.unbounded_send(Incoming::Broken("the WebSocket failed".into()));
        });
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(opened) = opened.borrow_mut().take() {
                let _ = opened.send(Ok(()));
            }
        });
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let transport = Self {
            socket,
            incoming,
            queued,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
            _on_open: on_open,
        };
        match open.await {
            Ok(Ok(())) => Ok(transport),
            Ok(Err(reason)) => Err(Error::Io(format!("opening the WebSocket to {url}: {reason}"))),
            Err(_) => Err(Error::Io(format!("opening the WebSocket to {url}: no answer"))),
        }
    }
}

#[kai_core::async_trait]
impl FrameTransport for WebSocketTransport {
    async fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        fits(frame)?;
        if self.socket.ready_state() != WebSocket::OPEN {
            return Err(Error::SessionClosed);
        }
        self.socket
            .send_with_u8_array(frame)
            .map_err(|e| js_error("sending a frame", &e))
    }

    async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        let item = self.incoming.next().await;
        self.queued.set(self.queued.get().saturating_sub(1));
        match item {
            Some(Incoming::Frame(frame)) => Ok(frame),
            Some(Incoming::Broken(reason)) => Err(broken(reason)),
            Some(Incoming::Closed) | None => Err(Error::SessionClosed),
        }
    }
}

impl Drop for WebSocketTransport {
    fn drop(&mut self) {
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        self.socket.set_onopen(None);
        let _ = self.socket.close();
    }
}
