//! A registry as podman and skopeo talk to it: one type for pushes, the
//! registry layer cache and read-backs, and the one place that writes how
//! to reach it (`--tls-verify`, `--authfile`).

use std::path::PathBuf;

use crate::{exec::Command, flags::Format};

/// Where to push and how to talk to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub registry: String,
    pub tls_verify: bool,
    pub format: Format,
    /// A private auth file holding the login of this run, if we logged in.
    pub authfile: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR` for skopeo (see `Engine::runtime_dir_for_tools`).
    pub skopeo_runtime_dir: Option<PathBuf>,
}

impl Destination {
    /// `--tls-verify` and, with this run's login, `--authfile`: how podman
    /// and skopeo reach the registry.
    pub fn connection_flags(&self, command: Command) -> Command {
        let command = command.arg(format!("--tls-verify={}", self.tls_verify));
        match &self.authfile {
            Some(authfile) => command.arg("--authfile").arg(authfile.to_string_lossy()),
            None => command,
        }
    }
}
