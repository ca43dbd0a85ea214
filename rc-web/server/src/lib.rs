//! rc-web's dependencies as one shared library, and its server loop.
//!
//! **The shared library.** The image build compiles this crate as a Rust
//! dylib with every crate rc-web uses and Rust's standard library inside, and
//! links rc-web against it. The library goes into an image layer of its own
//! that only a change to the dependencies changes (it is built apart from the
//! release and dated by a constant, so also on a machine with no layer
//! cache), so a release after a change to rc-web's code uploads a binary of
//! about 115 kB (gzipped) per platform instead of one of 650 kB with
//! everything linked in (figure 3 of docs/benchmarks.md). Everywhere else
//! (cargo build, cargo test) rc-web is one static binary, as usual. A crate
//! is linked into the dylib when this crate depends on it, hence the `extern
//! crate`s below for the ones not used here.
//!
//! **The server loop.** `axum::serve` is generic, and a generic function is
//! compiled into the crate that names its concrete types. Called from rc-web,
//! the whole hyper connection stack was compiled again on every change to
//! rc-web's handlers: 40% of a rebuild (measured: 4.1 s against 2.5 s for
//! x86_64, see docs/benchmarks.md). Here the types are concrete and the
//! functions are not generic, so the stack is compiled once, with the
//! dependencies, into the dependency layer; rc-web only calls it.

extern crate serde as _;
extern crate serde_json as _;

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
