//! Send-ness that follows the target: `Send` on native targets, nothing on `wasm32`.
//!
//! Browsers and other single-threaded wasm hosts hand out values (JS promises, DOM handles) that are not
//! `Send`. Every async trait in kAI therefore bounds its futures with [`MaybeSend`] instead of `Send`: on
//! native targets the two are the same bound, so multi-threaded runtimes such as tokio can move an agent
//! run between threads; on `wasm32` the bound disappears.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    /// `Send` on native targets; implemented for every type on `wasm32`.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; implemented for every type on `wasm32`.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}

    /// A boxed future that is `Send` on native targets.
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

    /// A boxed stream that is `Send` on native targets.
    pub type BoxStream<'a, T> = std::pin::Pin<Box<dyn futures::Stream<Item = T> + Send + 'a>>;
}

#[cfg(target_arch = "wasm32")]
mod imp {
    /// `Send` on native targets; implemented for every type on `wasm32`.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}

    /// `Sync` on native targets; implemented for every type on `wasm32`.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}

    /// A boxed future that is `Send` on native targets.
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

    /// A boxed stream that is `Send` on native targets.
    pub type BoxStream<'a, T> = std::pin::Pin<Box<dyn futures::Stream<Item = T> + 'a>>;
}

pub use imp::{BoxFuture, BoxStream, MaybeSend, MaybeSync};

/// Boxes a future into a [`BoxFuture`].
pub fn boxed<'a, F>(future: F) -> BoxFuture<'a, F::Output>
where
    F: Future + MaybeSend + 'a,
{
    let pinned: Pin<Box<F>> = Box::pin(future);
    pinned
}

/// Boxes a stream into a [`BoxStream`].
pub fn boxed_stream<'a, S>(stream: S) -> BoxStream<'a, S::Item>
where
    S: Stream + MaybeSend + 'a,
{
    let pinned: Pin<Box<S>> = Box::pin(stream);
    pinned
}
