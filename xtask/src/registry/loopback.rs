//! A registry on 127.0.0.1, for the benchmark and the end-to-end tests:
//! Debian's docker-registry (the CNCF Distribution registry), storing in a
//! directory of its own, optionally behind an htpasswd login; stopped, and
//! its directory removed, on drop. The one place that starts a registry:
//! `bench` uses it as a module of the xtask, the tests include this file
//! (`#[path]` in `tests/support`), so it uses the standard library only.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct LoopbackRegistry {
    child: Child,
    pub port: u16,
    pub directory: PathBuf,
}

impl LoopbackRegistry {
    /// Starts a registry storing in `directory` (created), on a free port
    /// of 127.0.0.1; with `Some((user, password))` it requires that login
    /// (htpasswd, bcrypt; the password reaches htpasswd on stdin). Waits
    /// (at most 20 s) until it answers.
    pub fn start(
        directory: &Path,
        login: Option<(&str, &str)>,
    ) -> Result<LoopbackRegistry, String> {
        std::fs::create_dir_all(directory)
            .map_err(|error| format!("{}: {error}", directory.display()))?;
        let port = free_loopback_port()?;
        let mut auth = String::new();
        if let Some((user, password)) = login {
            let htpasswd = directory.join("htpasswd");
            let mut child = Command::new("htpasswd")
                .args(["-B", "-i", "-c"])
                .arg(&htpasswd)
                .arg(user)
                .stdin(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|error| {
                    format!("cannot run htpasswd (apache2-utils; run `cargo xtask setup`): {error}")
                })?;
            let written = child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(password.as_bytes());
            let status = child.wait().map_err(|error| error.to_string())?;
            if written.is_err() || !status.success() {
                return Err("htpasswd failed".into());
            }
            auth = format!(
                "auth:\n  htpasswd:\n    realm: rc-loopback\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config = directory.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                directory.join("storage").display()
            ),
        )
        .map_err(|error| format!("{}: {error}", config.display()))?;
        let log = std::fs::File::create(directory.join("registry.log"))
            .map_err(|error| error.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| {
                format!("cannot start docker-registry (run `cargo xtask setup`): {error}")
            })?;
        let registry = LoopbackRegistry {
            child,
            port,
            directory: directory.to_path_buf(),
        };
        let ready = if login.is_some() { 401 } else { 200 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_status(port, "/v2/") != Some(ready) {
            if Instant::now() > deadline {
                return Err(format!("the registry did not start on 127.0.0.1:{port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Tags of `repository` as stored on disk: readable without credentials.
    #[allow(dead_code)] // the tests' (the benchmark counts bytes)
    pub fn stored_tags(&self, repository: &str) -> Vec<String> {
        let directory = self.directory.join(format!(
            "storage/docker/registry/v2/repositories/{repository}/_manifests/tags"
        ));
        let mut tags: Vec<String> = std::fs::read_dir(directory)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Bytes of every blob the registry stores: what was uploaded to it.
    #[allow(dead_code)] // the benchmark's
    pub fn stored_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => walk(&entry.path()),
                    Ok(_) => entry.metadata().map(|metadata| metadata.len()).unwrap_or(0),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.directory.join("storage/docker/registry/v2/blobs"))
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// A port of 127.0.0.1 that nothing listens on now.
pub fn free_loopback_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| error.to_string())
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, within 2 s.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
