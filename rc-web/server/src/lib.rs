//! rc-web's server loop: axum's `serve` for a type-erased [`Router`], with a
//! graceful shutdown.
//!
//! Why a crate of its own: `axum::serve` is generic, and a generic function is
//! compiled into the crate that names its concrete types. Called from rc-web,
//! the whole hyper connection stack was compiled again on every change to
//! rc-web's handlers: 40% of a rebuild (measured: 4.1 s against 2.5 s for
//! x86_64, see docs/benchmarks.md). Here the types are concrete and the
//! functions are not generic, so the stack is compiled once, with the
//! dependencies, in the image's dependency layer; rc-web only calls it.
//! The shipped code is the same (no LTO either way), one call further away.

use std::{future::Future, io, pin::Pin};

use axum::Router;
use tokio::net::TcpListener;

/// Completes when the server should stop accepting connections.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    Box::pin(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    })
}
