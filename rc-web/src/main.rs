//! rc-web entry point: read config from the environment, serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};

fn main() -> ExitCode {
    let config = match rc_web::Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("rc-web: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rc-web: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rc-web: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: rc_web::Config) -> Result<(), String> {
    let address = config.socket_address();
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    let version = rc_web::VersionInfo::of_this_build();
    // Tests (and people) read this line to find the port when PORT=0.
    eprintln!(
        "rc-web: {} {} ({}) listening on {bound}",
        version.name, version.version, version.arch
    );
    let shutdown = shutdown_signal().map_err(|error| format!("cannot watch signals: {error}"))?;
    rc_web::serve(listener, shutdown)
        .await
        .map_err(|error| format!("server error: {error}"))?;
    eprintln!("rc-web: stopped");
    Ok(())
}

/// Completes on the first SIGTERM (container stop) or SIGINT (Ctrl-C).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        eprintln!("rc-web: {name} received, shutting down gracefully");
    })
}
