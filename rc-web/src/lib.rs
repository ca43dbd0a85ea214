//! rc-web: the HTTP service that the release pipeline ships.
//!
//! The binary (`main.rs`) reads [`Config`] from the environment, binds, and calls
//! [`serve`]. Everything observable over HTTP lives here so tests can drive it.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use axum::{
    body::Bytes,
    extract::{Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Default port; the container image declares `EXPOSE 8000` to match.
pub const DEFAULT_PORT: u16 = 8000;

/// Runtime settings, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bind_address: IpAddr,
    pub port: u16,
}

impl Config {
    /// Reads `BIND_ADDRESS` (default `0.0.0.0`) and `PORT` (default 8000).
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let bind_address = match lookup("BIND_ADDRESS") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(text) => text.trim().parse().map_err(|_| {
                format!("BIND_ADDRESS={text:?} is not an IP address; use e.g. 0.0.0.0 or 127.0.0.1")
            })?,
        };
        let port = match lookup("PORT") {
            None => DEFAULT_PORT,
            Some(text) => text.trim().parse().map_err(|_| {
                format!("PORT={text:?} is not a port number; use 0-65535 (0 picks a free port)")
            })?,
        };
        Ok(Config { bind_address, port })
    }

    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.port)
    }
}

/// What `/version` reports. Revision and build date are baked in at compile time
/// through `RC_WEB_GIT_REVISION` and `RC_WEB_BUILD_DATE` when the build sets them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub git_revision: Option<String>,
    pub build_date: Option<String>,
    /// The CPU architecture the binary was compiled for (`x86_64`, `aarch64`).
    pub arch: String,
    pub os: String,
}

impl VersionInfo {
    pub fn of_this_build() -> VersionInfo {
        VersionInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_revision: non_empty(option_env!("RC_WEB_GIT_REVISION")),
            build_date: non_empty(option_env!("RC_WEB_BUILD_DATE")),
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
        }
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|text| !text.is_empty()).map(str::to_owned)
}

#[derive(Clone)]
struct AppState {
    /// Cleared when shutdown starts, so `/readyz` tells load balancers to stop
    /// sending traffic while in-flight requests finish.
    ready: Arc<AtomicBool>,
    version: Arc<VersionInfo>,
}

/// Handle on a running server's readiness, for the shutdown path.
#[derive(Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn mark_draining(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Builds the router with every endpoint and request logging.
pub fn router() -> (Router, Readiness) {
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState {
        ready: ready.clone(),
        version: Arc::new(VersionInfo::of_this_build()),
    };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/hello", get(hello))
        .route("/echo", post(echo))
        .layer(middleware::from_fn(log_request))
        .with_state(state);
    (router, Readiness(ready))
}

/// Serves until `shutdown` completes, then stops accepting, marks the service
/// not ready and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (app, readiness) = router();
    rc_web_server::serve(
        listener,
        app,
        Box::pin(async move {
            shutdown.await;
            readiness.mark_draining();
        }),
    )
    .await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        let body = Json(serde_json::json!({ "status": "draining" }));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    Json(VersionInfo::clone(&state.version))
}

#[derive(Deserialize)]
struct HelloQuery {
    name: Option<String>,
}

async fn hello(Query(query): Query<HelloQuery>) -> Json<serde_json::Value> {
    let name = query.name.as_deref().unwrap_or("world");
    Json(serde_json::json!({ "message": format!("Hello, {name}!") }))
}

/// Returns the request body unchanged, with the request's content type.
async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// One line per request on stderr: method, path, status, latency.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    eprintln!(
        "rc-web: {method} {path} {} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_listen_on_all_interfaces_port_8000() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.socket_address().to_string(), "0.0.0.0:8000");
    }

    #[test]
    fn env_overrides_address_and_port() {
        let config = config_from(&[("BIND_ADDRESS", "127.0.0.1"), ("PORT", "9090")]).unwrap();
        assert_eq!(config.socket_address().to_string(), "127.0.0.1:9090");
        let config = config_from(&[("BIND_ADDRESS", "::1")]).unwrap();
        assert_eq!(config.socket_address().to_string(), "[::1]:8000");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        let error = config_from(&[("PORT", "eighty")]).unwrap_err();
        assert!(
            error.contains("PORT=\"eighty\"") && error.contains("0-65535"),
            "{error}"
        );
        let error = config_from(&[("PORT", "70000")]).unwrap_err();
        assert!(error.contains("PORT"), "{error}");
        let error = config_from(&[("BIND_ADDRESS", "localhost:1")]).unwrap_err();
        assert!(
            error.contains("BIND_ADDRESS") && error.contains("127.0.0.1"),
            "{error}"
        );
    }

    #[test]
    fn version_reports_the_compile_target_architecture() {
        let info = VersionInfo::of_this_build();
        assert_eq!(info.arch, std::env::consts::ARCH);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
