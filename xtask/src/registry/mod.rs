//! Pushing manifest lists to a registry: credentials, retries, and reading
//! every pushed tag back from the registry (with skopeo, independently of
//! podman) to check it holds the platforms that were built.
//!
//! Secrets reach podman only on stdin (`podman login --password-stdin`) and are
//! stored only in a private, temporary auth file that is removed afterwards.

pub mod loopback;

use std::{
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    engine::podman,
    engine::Destination,
    exec::{Command, Runner, Stdin},
    flags::Format,
    platform::Platform,
};

fn skopeo(destination: &Destination) -> Command {
    let command = Command::new("skopeo");
    match &destination.skopeo_runtime_dir {
        Some(directory) => command.env("XDG_RUNTIME_DIR", directory.to_string_lossy()),
        None => command,
    }
}

pub struct Credentials {
    pub username: String,
    pub secret: Vec<u8>,
    /// Which variables they came from, for messages (never the values).
    pub source: &'static str,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "Credentials({} from {}, secret hidden)",
            self.username, self.source
        )
    }
}

/// `REGISTRY_USER` + `REGISTRY_TOKEN` (or `REGISTRY_PASSWORD`); for ghcr.io also
/// `GITHUB_TOKEN` with `GITHUB_ACTOR`. `None`: use podman's existing login.
pub fn credentials_from_env(
    registry: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>> {
    let user = lookup("REGISTRY_USER").filter(|value| !value.is_empty());
    let token = lookup("REGISTRY_TOKEN")
        .or_else(|| lookup("REGISTRY_PASSWORD"))
        .filter(|value| !value.is_empty());
    match (user, token) {
        (Some(username), Some(token)) => {
            return Ok(Some(Credentials { username, secret: token.into_bytes(), source: "REGISTRY_USER/REGISTRY_TOKEN" }))
        }
        (Some(_), None) => bail!("REGISTRY_USER is set but REGISTRY_TOKEN is not; set both, or neither to use `podman login`"),
        (None, Some(_)) if registry != "ghcr.io" => {
            bail!("REGISTRY_TOKEN is set but REGISTRY_USER is not; set both, or neither to use `podman login`")
        }
        _ => {}
    }
    if registry == "ghcr.io" {
        if let Some(token) = lookup("GITHUB_TOKEN").filter(|value| !value.is_empty()) {
            let Some(username) = lookup("REGISTRY_USER")
                .or_else(|| lookup("GITHUB_ACTOR"))
                .filter(|value| !value.is_empty())
            else {
                bail!("GITHUB_TOKEN is set but no user name: set GITHUB_ACTOR (GitHub Actions does) or REGISTRY_USER");
            };
            return Ok(Some(Credentials {
                username,
                secret: token.into_bytes(),
                source: "GITHUB_ACTOR/GITHUB_TOKEN",
            }));
        }
    }
    Ok(None)
}

fn tls_flag(tls_verify: bool) -> String {
    format!("--tls-verify={tls_verify}")
}

pub fn login_command(
    destination: &Destination,
    authfile: &Path,
    credentials: &Credentials,
) -> Command {
    let mut command = Command::new(podman::PROGRAM)
        .args(["login", "--authfile"])
        .arg(authfile.to_string_lossy())
        .args(["--username", &credentials.username, "--password-stdin"])
        .arg(tls_flag(destination.tls_verify))
        .arg(&destination.registry);
    command.stdin = Some(Stdin::Secret(credentials.secret.clone()));
    command
}

/// `with_images: false` pushes the list alone, for lists whose images are
/// already in the registry (merged from digests).
pub fn push_list_command(
    destination: &Destination,
    local_list: &str,
    remote: &str,
    with_images: bool,
) -> Command {
    let mut command = Command::new(podman::PROGRAM)
        .args(["manifest", "push"])
        .arg(if with_images { "--all" } else { "--all=false" })
        .args(["--format", destination.format.podman_name()]);
    command = destination.connection_flags(command);
    command.arg(local_list).arg(format!("docker://{remote}"))
}

/// Pulls one image from a registry into podman's storage, quietly (a base
/// image kept under its definition's fingerprint).
pub fn pull_image_command(destination: &Destination, remote: &str) -> Command {
    let mut command = Command::new(podman::PROGRAM).args(["pull", "--quiet"]);
    command = destination.connection_flags(command);
    command.arg(format!("docker://{remote}"))
}

/// Pushes one local image to `remote`, quietly.
pub fn push_image_command(destination: &Destination, local: &str, remote: &str) -> Command {
    let mut command = Command::new(podman::PROGRAM).args([
        "push",
        "--quiet",
        "--format",
        destination.format.podman_name(),
    ]);
    command = destination.connection_flags(command);
    command.arg(local).arg(format!("docker://{remote}"))
}

/// Copies one image from podman's storage into a `dir:` layout, compressed
/// and in the destination's format: its manifest there is byte for byte the
/// one the registry will hold, so its digest is known before the push.
pub fn save_for_digest_push(destination: &Destination, local: &str, directory: &Path) -> Command {
    let format = match destination.format {
        Format::Oci => "oci",
        Format::V2s2 => "v2s2",
    };
    Command::new(podman::PROGRAM)
        .args(["push", "--quiet", "--format", format, local])
        .arg(format!("dir:{}", directory.display()))
}

/// Pushes a `dir:` layout to `repository@digest`: by digest, with no tag.
pub fn push_by_digest_command(
    destination: &Destination,
    directory: &Path,
    repository: &str,
    digest: &str,
) -> Command {
    let mut command = skopeo(destination)
        .args(["copy", "--quiet"])
        .arg(format!("--dest-tls-verify={}", destination.tls_verify));
    if let Some(authfile) = &destination.authfile {
        command = command
            .arg("--dest-authfile")
            .arg(authfile.to_string_lossy());
    }
    command
        .arg(format!("dir:{}", directory.display()))
        .arg(format!("docker://{repository}@{digest}"))
}

/// Copies the image `remote` (`repository@digest`) from its registry to a
/// `dir:` layout: its manifest, config and layer blobs as files.
pub fn copy_to_dir_command(destination: &Destination, remote: &str, directory: &Path) -> Command {
    let mut command = skopeo(destination)
        .args(["copy", "--quiet"])
        .arg(format!("--src-tls-verify={}", destination.tls_verify));
    if let Some(authfile) = &destination.authfile {
        command = command
            .arg("--src-authfile")
            .arg(authfile.to_string_lossy());
    }
    command
        .arg(format!("docker://{remote}"))
        .arg(format!("dir:{}", directory.display()))
}

/// Adds the image `repository@digest` from the registry to a local list
/// (podman reads its platform from the registry).
pub fn manifest_add_remote(destination: &Destination, list: &str, remote: &str) -> Command {
    let mut command = Command::new(podman::PROGRAM).args(["manifest", "add"]);
    command = destination.connection_flags(command);
    command.arg(list).arg(format!("docker://{remote}"))
}

/// The sha256 digest of bytes, as registries name manifests.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

/// `skopeo inspect` of `remote` with `mode` (`--raw`: the manifest as
/// stored; `--no-tags`: the image's config, without listing the tags).
fn skopeo_inspect(destination: &Destination, mode: &str, remote: &str) -> Command {
    let mut command = skopeo(destination).args(["inspect", mode]);
    command = destination.connection_flags(command);
    command.arg(format!("docker://{remote}"))
}

/// `skopeo list-tags` of a repository (see [`parse_tags`]).
pub fn list_tags_command(destination: &Destination, repository: &str) -> Command {
    let mut command = skopeo(destination).arg("list-tags");
    command = destination.connection_flags(command);
    command.arg(format!("docker://{repository}"))
}

/// The tags in `skopeo list-tags`' answer.
pub fn parse_tags(json: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Tags {
        #[serde(rename = "Tags")]
        tags: Option<Vec<String>>,
    }
    let tags: Tags = serde_json::from_str(json).context("skopeo list-tags printed no JSON")?;
    Ok(tags.tags.unwrap_or_default())
}

pub fn inspect_remote_command(destination: &Destination, remote: &str) -> Command {
    skopeo_inspect(destination, "--raw", remote)
}

/// Asks the registry which platform the image `remote` (`repo@digest`)
/// is for (its config's os and architecture).
pub fn image_platform_command(destination: &Destination, remote: &str) -> Command {
    skopeo_inspect(destination, "--no-tags", remote)
}

/// The platform in `skopeo inspect`'s answer (`linux/arm64/v8` is arm64's).
pub fn parse_image_platform(json: &str) -> Result<Platform> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("skopeo inspect printed no JSON")?;
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let platform = format!("{}/{}", text("Os"), text("Architecture"));
    platform.parse().with_context(|| {
        format!("the image is for {platform}, which this pipeline does not release")
    })
}

/// A label of the image in `skopeo inspect`'s answer; `None` without it
/// (or without an answer to read).
pub fn parse_image_label(json: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["Labels"][key].as_str().map(str::to_owned)
}

/// Logs in with the secret on stdin. Refused credentials are bad input.
pub fn log_in(
    runner: &Runner,
    destination: &Destination,
    authfile: &Path,
    credentials: &Credentials,
) -> Result<()> {
    match runner.run(&login_command(destination, authfile, credentials)) {
        Ok(()) => Ok(()),
        Err(error) if is_permanent_failure(&format!("{error:#}")) => {
            Err(crate::BadInput(vec![format!(
                "{} refused the login of {} (credentials from {}); check them (a GitHub token \
                 needs the packages: write permission)",
                destination.registry, credentials.username, credentials.source
            )])
            .into())
        }
        Err(error) => Err(error.context(format!(
            "cannot log in to {}; check {}",
            destination.registry, credentials.source
        ))),
    }
}

/// Fails when nothing answers at the registry's address: before a build,
/// this saves the build.
pub fn check_reachable(registry: &str, tls_verify: bool) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let has_port = registry
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.chars().all(|c| c.is_ascii_digit()));
    let candidates: Vec<String> = if has_port {
        vec![registry.to_owned()]
    } else if tls_verify {
        vec![format!("{registry}:443")]
    } else {
        vec![format!("{registry}:443"), format!("{registry}:80")]
    };
    let mut last_error = String::new();
    for candidate in &candidates {
        let addresses = match candidate.to_socket_addrs() {
            Ok(addresses) => addresses,
            Err(error) => {
                last_error = format!("cannot resolve {candidate}: {error}");
                continue;
            }
        };
        for address in addresses {
            match TcpStream::connect_timeout(&address, Duration::from_secs(10)) {
                Ok(_) => return Ok(()),
                Err(error) => last_error = format!("{address}: {error}"),
            }
        }
    }
    bail!(
        "cannot reach the registry {registry} ({last_error}); check --registry (or REGISTRY), \
         the network, and that the registry is running"
    )
}

/// Errors that retrying cannot fix.
pub fn is_permanent_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "denied",
        "invalid username/password",
        "manifest unknown",
        "no such manifest",
    ]
    .iter()
    .any(|marker| message.contains(marker))
}

/// `operation`, run again after `first_delay`, then twice as long each time,
/// while `retry` finds the error worth it, at most `attempts` times in all,
/// and never after a signal (`announce` says each retry first). The last
/// error comes back with the attempt it ended on.
pub fn with_backoff<T>(
    attempts: u32,
    first_delay: Duration,
    mut operation: impl FnMut() -> Result<T>,
    retry: impl Fn(&anyhow::Error) -> bool,
    mut announce: impl FnMut(u32, &anyhow::Error, Duration),
) -> std::result::Result<T, (anyhow::Error, u32)> {
    let mut delay = first_delay;
    let mut attempt = 1;
    loop {
        match operation() {
            Ok(value) => return Ok(value),
            Err(error)
                if attempt < attempts
                    && crate::interrupt::received().is_none()
                    && retry(&error) =>
            {
                announce(attempt, &error, delay);
                thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(error) => return Err((error, attempt)),
        }
    }
}

/// Runs `command`, retrying transient failures with exponential backoff
/// (1 s, 2 s, 4 s, ...), at most `attempts` times.
pub fn run_with_retries(
    runner: &Runner,
    command: &Command,
    attempts: u32,
    prefix: &str,
) -> Result<()> {
    with_backoff(
        attempts,
        Duration::from_secs(1),
        || runner.run_prefixed(command, prefix),
        |error| !is_permanent_failure(&format!("{error:#}")),
        |attempt, _, delay| {
            eprintln!(
                "{prefix}push: attempt {attempt} of {attempts} failed; retrying in {} s",
                delay.as_secs()
            )
        },
    )
    .map_err(|(error, attempt)| {
        if crate::interrupt::received().is_some() {
            return error;
        }
        let why = if is_permanent_failure(&format!("{error:#}")) {
            "not retried: the registry refused"
        } else {
            "giving up"
        };
        error.context(format!("push failed after {attempt} attempt(s), {why}"))
    })
}

/// A registry's answer that it failed itself (HTTP 5xx, e.g. Distribution's
/// `500 Internal Server Error` while other tags of the list are being
/// written): asked again a moment later, it usually is not.
fn is_server_error(message: &str) -> bool {
    message.contains("unexpected HTTP status: 5")
}

/// Reads `command`'s answer from the registry, asking again (after 1 s, then
/// 2 s) while the registry answers with an error of its own.
pub fn read_back(runner: &Runner, command: &Command) -> Result<String> {
    with_backoff(
        3,
        Duration::from_secs(1),
        || runner.read(command),
        |error| is_server_error(&format!("{error:#}")),
        |_, error, delay| {
            eprintln!(
                "push: the registry failed to answer a read-back ({}); asking again in {} s",
                crate::exec::first_line(&format!("{error:#}")),
                delay.as_secs()
            )
        },
    )
    .map_err(|(error, _)| error)
}

/// A manifest list as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIndex {
    /// The digest of the list itself (what `repository@digest` pulls).
    pub digest: String,
    /// `(linux/amd64, digest of that image's manifest)`, as listed.
    pub entries: Vec<(String, String)>,
}

/// Reads `remote` back from the registry and checks its platforms and format.
pub fn verify_remote(
    runner: &Runner,
    destination: &Destination,
    remote: &str,
    expected: &[Platform],
) -> Result<RemoteIndex> {
    let raw = read_back(runner, &inspect_remote_command(destination, remote))
        .with_context(|| format!("cannot read {remote} back from the registry"))?;
    let index: serde_json::Value = serde_json::from_str(&raw)
        .with_context(|| format!("{remote}: the registry returned no JSON"))?;
    let media_type = index["mediaType"].as_str().unwrap_or("(none)");
    // (The format is checked first: it says more than the platforms would.)
    if media_type != destination.format.media_type() {
        bail!(
            "{remote} is {media_type}, expected {} (--format {})",
            destination.format.media_type(),
            destination.format.podman_name()
        );
    }
    let list = podman::ManifestList::parse(&raw)?;
    let mut found: Vec<String> = list
        .manifests
        .iter()
        .filter_map(podman::ManifestEntry::platform_string)
        .collect();
    found.sort();
    let mut wanted: Vec<String> = expected.iter().map(Platform::to_string).collect();
    wanted.sort();
    if found != wanted {
        bail!(
            "{remote} in the registry has platforms [{}], expected [{}]",
            found.join(", "),
            wanted.join(", ")
        );
    }
    Ok(RemoteIndex::of(&raw, &list))
}

impl RemoteIndex {
    fn of(raw: &str, list: &podman::ManifestList) -> RemoteIndex {
        RemoteIndex {
            digest: digest_of(raw.as_bytes()),
            entries: list
                .manifests
                .iter()
                .map(|entry| {
                    (
                        entry.platform_string().unwrap_or_default(),
                        entry.digest.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// The list `remote` (`repo:tag` or `repo@digest`) as the registry holds
/// it, whatever its platforms.
pub fn read_index(runner: &Runner, destination: &Destination, remote: &str) -> Result<RemoteIndex> {
    let raw = read_back(runner, &inspect_remote_command(destination, remote))
        .with_context(|| format!("cannot read {remote} from the registry"))?;
    let list = podman::ManifestList::parse(&raw)
        .with_context(|| format!("{remote} is not a manifest list"))?;
    Ok(RemoteIndex::of(&raw, &list))
}

/// A private directory for this run's auth file, removed on drop.
pub struct PrivateAuth(crate::project::TemporaryDirectory);

impl PrivateAuth {
    pub fn create() -> Result<PrivateAuth> {
        crate::project::TemporaryDirectory::create("rc-xtask-auth").map(PrivateAuth)
    }

    pub fn file(&self) -> PathBuf {
        self.0.path().join("auth.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_retries_what_it_is_told_to_and_says_where_it_stopped() {
        let mut calls = 0;
        let mut announced = Vec::new();
        let failing = with_backoff(
            3,
            Duration::ZERO,
            || -> Result<()> {
                calls += 1;
                bail!("unexpected HTTP status: 500")
            },
            |error| error.to_string().contains("status: 5"),
            |attempt, _, _| announced.push(attempt),
        );
        let (error, attempt) = failing.unwrap_err();
        assert_eq!((calls, attempt, announced), (3, 3, vec![1, 2]));
        assert!(error.to_string().contains("500"));
        let mut calls = 0;
        let refused = with_backoff(
            5,
            Duration::ZERO,
            || -> Result<()> {
                calls += 1;
                bail!("unauthorized")
            },
            |error| !error.to_string().contains("unauthorized"),
            |_, _, _| {},
        );
        assert_eq!((refused.unwrap_err().1, calls), (1, 1));
        let mut calls = 0;
        let third_time = with_backoff(
            5,
            Duration::ZERO,
            || {
                calls += 1;
                if calls < 3 {
                    bail!("reset")
                }
                Ok(calls)
            },
            |_| true,
            |_, _, _| {},
        );
        assert_eq!(third_time.unwrap(), 3);
    }

    #[test]
    fn an_images_platform_comes_from_skopeos_answer() {
        let answer = r#"{"Name":"r/x","Digest":"sha256:aa","Architecture":"arm64","Os":"linux","Variant":"v8"}"#;
        assert_eq!(parse_image_platform(answer).unwrap(), Platform::LINUX_ARM64);
        let error = parse_image_platform(r#"{"Architecture":"s390x","Os":"linux"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("linux/s390x"), "{error}");
        let labelled = r#"{"Os":"linux","Labels":{"org.opencontainers.image.revision":"abc"}}"#;
        assert_eq!(
            parse_image_label(labelled, "org.opencontainers.image.revision").as_deref(),
            Some("abc")
        );
        assert_eq!(
            parse_image_label(answer, "org.opencontainers.image.revision"),
            None
        );
        let shown = image_platform_command(
            &Destination {
                registry: "127.0.0.1:5000".into(),
                tls_verify: false,
                format: Format::Oci,
                authfile: None,
                skopeo_runtime_dir: None,
            },
            "127.0.0.1:5000/x@sha256:aa",
        )
        .to_string();
        assert_eq!(
            shown,
            "skopeo inspect --no-tags --tls-verify=false docker://127.0.0.1:5000/x@sha256:aa"
        );
    }
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn destination() -> Destination {
        Destination {
            registry: "127.0.0.1:5000".into(),
            tls_verify: false,
            format: Format::Oci,
            authfile: Some("/tmp/a/auth.json".into()),
            skopeo_runtime_dir: None,
        }
    }

    #[test]
    fn registry_credentials_come_from_env_and_both_halves_are_needed() {
        let credentials = credentials_from_env(
            "r.example",
            lookup(&[("REGISTRY_USER", "bot"), ("REGISTRY_TOKEN", "t0k")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (credentials.username.as_str(), credentials.secret.as_slice()),
            ("bot", b"t0k".as_slice())
        );
        let error = credentials_from_env("r.example", lookup(&[("REGISTRY_USER", "bot")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("REGISTRY_TOKEN is not"), "{error}");
        let error = credentials_from_env("r.example", lookup(&[("REGISTRY_TOKEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("REGISTRY_USER is not"), "{error}");
        assert!(credentials_from_env("r.example", lookup(&[]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn github_token_logs_in_to_ghcr_as_the_actor() {
        let credentials = credentials_from_env(
            "ghcr.io",
            lookup(&[("GITHUB_TOKEN", "ghs_x"), ("GITHUB_ACTOR", "octo")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(credentials.username, "octo");
        assert!(credentials_from_env("ghcr.io", lookup(&[("GITHUB_TOKEN", "ghs_x")])).is_err());
        assert!(
            credentials_from_env("quay.io", lookup(&[("GITHUB_TOKEN", "ghs_x")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_secret_travels_on_stdin_only() {
        let credentials = Credentials {
            username: "bot".into(),
            secret: b"hunter2".to_vec(),
            source: "test",
        };
        let command = login_command(&destination(), Path::new("/tmp/a/auth.json"), &credentials);
        assert!(!command.args.iter().any(|arg| arg.contains("hunter2")));
        assert!(!command.to_string().contains("hunter2"));
        assert!(!format!("{credentials:?}").contains("hunter2"));
        assert!(command.stdin == Some(Stdin::Secret(b"hunter2".to_vec())));
        assert!(command.args.contains(&"--password-stdin".to_owned()));
    }

    #[test]
    fn push_pushes_every_image_in_the_requested_format() {
        let command = push_list_command(
            &destination(),
            "127.0.0.1:5000/rc-web:v1.2.3",
            "127.0.0.1:5000/rc-web:v1.2.3",
            true,
        );
        assert_eq!(
            command.to_string(),
            "podman manifest push --all --format oci --tls-verify=false --authfile /tmp/a/auth.json \
             127.0.0.1:5000/rc-web:v1.2.3 docker://127.0.0.1:5000/rc-web:v1.2.3"
        );
        let mut verified = destination();
        verified.tls_verify = true;
        verified.format = Format::V2s2;
        verified.authfile = None;
        let shown = push_list_command(&verified, "a:b", "a:b", true).to_string();
        assert!(
            shown.contains("--format v2s2 --tls-verify=true a:b"),
            "{shown}"
        );
    }

    #[test]
    fn skopeo_is_given_podmans_runtime_directory_when_the_session_has_none() {
        let mut rootless = destination();
        rootless.skopeo_runtime_dir = Some("/tmp/podman-run-1001".into());
        for command in [
            inspect_remote_command(&rootless, "127.0.0.1:5000/rc-web:v1"),
            push_by_digest_command(
                &rootless,
                Path::new("/d"),
                "127.0.0.1:5000/rc-web",
                "sha256:aa",
            ),
        ] {
            assert!(
                command
                    .to_string()
                    .starts_with("XDG_RUNTIME_DIR=/tmp/podman-run-1001 skopeo "),
                "{command}"
            );
        }
        let shown = inspect_remote_command(&destination(), "127.0.0.1:5000/rc-web:v1").to_string();
        assert!(shown.starts_with("skopeo inspect"), "{shown}");
    }

    #[test]
    fn only_the_registrys_own_failures_are_asked_again() {
        assert!(is_server_error(
            "reading manifest a77c3f6 in 127.0.0.1:34329/rc-web-once: received unexpected HTTP status: 500 Internal Server Error"
        ));
        assert!(!is_server_error("manifest unknown"));
        assert!(!is_server_error(
            "dial tcp 127.0.0.1:5000: connect: connection refused"
        ));
    }

    #[test]
    fn auth_failures_are_not_retried() {
        assert!(is_permanent_failure("Error: ... 401 Unauthorized"));
        assert!(is_permanent_failure("authentication required"));
        assert!(!is_permanent_failure(
            "dial tcp 127.0.0.1:5000: connect: connection refused"
        ));
    }

    #[test]
    fn transient_failures_are_retried_a_bounded_number_of_times() {
        let counter = std::env::temp_dir().join(format!("rc-retry-{}", std::process::id()));
        let _ = std::fs::remove_file(&counter);
        let command =
            Command::new("sh").args(["-c", &format!("echo x >> {0}; exit 1", counter.display())]);
        let error = run_with_retries(&Runner::new(false), &command, 2, "").unwrap_err();
        assert!(
            format!("{error:#}").contains("after 2 attempt(s)"),
            "{error:#}"
        );
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap().lines().count(),
            2
        );
        std::fs::remove_file(counter).unwrap();
    }
}
