//! End-to-end: real podman, real qemu. Builds rc-web for linux/amd64 and
//! linux/arm64 with `cargo xtask build-image`, then runs each image and asks it
//! what it is. Needs a machine prepared by `cargo xtask setup` (the README's
//! test command does that first).

mod support;

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use support::*;

const REGISTRY: &str = "localhost";
const IMAGE: &str = "rc-web-e2e";
const TAG: &str = "test";
const BUILD: [&str; 7] = [
    "build-image",
    "--registry",
    REGISTRY,
    "--image",
    IMAGE,
    "--tag",
    TAG,
];

/// A container that is removed however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "2", &self.0])
            .output();
    }
}

/// Polls until the service answers (qemu start-up takes a moment), bounded.
fn wait_for_health(port: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(reply) = http_get(port, "/healthz") {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "rc-web did not answer on 127.0.0.1:{port} within 60 s"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// Starts one entry of the list by its image (podman 4.3's `run --platform`
/// on a local list can pick the wrong entry) and waits until it answers.
fn start(list: &str, platform: &str, digest: &str) -> (Container, u16) {
    let port = free_loopback_port();
    let name = format!(
        "rc-web-e2e-{}-{}",
        platform.replace('/', "-"),
        std::process::id()
    );
    let _ = Command::new("podman")
        .args(["rm", "--force", &name])
        .output();
    podman(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--platform",
        platform,
        "--publish",
        &format!("127.0.0.1:{port}:8000"),
        &entry_image(list, digest),
    ]);
    let container = Container(name);
    let (status, body) = wait_for_health(port);
    assert_eq!(status, 200, "{platform} /healthz: {body}");
    assert!(body.contains("\"ok\""), "{platform} /healthz: {body}");
    (container, port)
}

/// Runs one entry of the list and checks what it reports.
fn run_and_check(list: &str, platform: &str, digest: &str, expected_machine: &str) {
    let (container, port) = start(list, platform, digest);

    let (status, body) = http_get(port, "/version").expect("/version answers");
    assert_eq!(status, 200);
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        version["arch"], expected_machine,
        "{platform} /version: {body}"
    );
    assert_eq!(version["name"], "rc-web");
    assert_eq!(
        version["git_revision"]
            .as_str()
            .map(str::len)
            .map(|len| len >= 40),
        Some(true),
        "{body}"
    );

    // Graceful shutdown inside the container: SIGTERM, then a clean exit.
    podman(&["stop", "--time", "20", &container.0]);
    let exit_code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(exit_code.trim(), "0", "{platform} exit code after SIGTERM");
    // rc-web logs to stderr, which `podman logs` replays on its own stderr.
    let logs = Command::new("podman")
        .args(["logs", &container.0])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(
        logs.contains("GET /version 200"),
        "{platform} request log: {logs}"
    );
    assert!(
        logs.contains("SIGTERM received"),
        "{platform} shutdown log: {logs}"
    );
}

#[test]
fn rc_web_builds_for_both_platforms_and_each_image_runs_as_its_architecture() {
    let list = format!("{REGISTRY}/{IMAGE}:{TAG}");
    let _serial = serial();
    let output = xtask_in(&repository_root(), &BUILD, &[]);
    assert!(output.status.success(), "build-image failed");

    let mut entries = local_entries(&list);
    entries.sort();
    let platforms: Vec<&str> = entries
        .iter()
        .map(|(platform, _)| platform.as_str())
        .collect();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm64"],
        "the list holds exactly both platforms"
    );

    // Each entry's image is configured for its platform, runs as non-root and exposes 8000.
    for (platform, digest) in &entries {
        let config: serde_json::Value = serde_json::from_str(&podman(&[
            "image",
            "inspect",
            "--format",
            "json",
            &entry_image(&list, digest),
        ]))
        .unwrap();
        let config = &config[0];
        assert_eq!(
            format!(
                "{}/{}",
                config["Os"].as_str().unwrap(),
                config["Architecture"].as_str().unwrap()
            ),
            *platform
        );
        assert_eq!(config["Config"]["User"], "10001:10001");
        assert!(
            config["Config"]["ExposedPorts"].get("8000/tcp").is_some(),
            "{platform}: EXPOSE 8000"
        );
    }

    for (platform, digest) in &entries {
        let machine = if platform == "linux/amd64" {
            "x86_64"
        } else {
            "aarch64"
        };
        run_and_check(&list, platform, digest, machine);
    }

    // Each binary carries its dependency list (cargo-auditable), as read by
    // cargo-auditable's own reader (what trivy, syft and grype read): rc-web,
    // its library, and the versions Cargo.lock pins.
    let lock = std::fs::read_to_string(repository_root().join("Cargo.lock")).unwrap();
    let tokio = lock
        .split("[[package]]")
        .find(|entry| entry.contains("name = \"tokio\"\n"))
        .and_then(|entry| {
            entry
                .lines()
                .find_map(|line| line.strip_prefix("version = "))
        })
        .map(|version| version.trim_matches('"').to_owned())
        .expect("Cargo.lock pins tokio");
    for (platform, digest) in &entries {
        let binary = copy_out(&entry_image(&list, digest), "/usr/local/bin/rc-web");
        let info = auditable_info::audit_info_from_file(&binary, Default::default())
            .unwrap_or_else(|error| panic!("{platform}: no dependency list in rc-web: {error}"));
        let packages: Vec<String> = info
            .packages
            .iter()
            .map(|package| format!("{} {}", package.name, package.version))
            .collect();
        for wanted in ["rc-web ", "rc-web-server ", &format!("tokio {tokio}")] {
            assert!(
                packages.iter().any(|package| package.starts_with(wanted)),
                "{platform}: {wanted:?} is not in {packages:?}"
            );
        }
        let _ = std::fs::remove_dir_all(binary.parent().unwrap());
    }

    // A rerun (warm cache) replaces the list instead of adding to it.
    let output = xtask_in(&repository_root(), &BUILD, &[]);
    assert!(output.status.success(), "second build-image failed");
    assert_eq!(
        local_entries(&list).len(),
        2,
        "a rerun must not accumulate entries"
    );
    let leftovers = podman(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference={REGISTRY}/{IMAGE}"),
    ]);
    assert_eq!(
        leftovers.trim(),
        list,
        "only the final list keeps a name (no temporary lists left)"
    );

    podman(&["manifest", "rm", &list]);
}

#[test]
fn dry_run_prints_the_podman_commands_and_builds_nothing() {
    let output = xtask_in(
        &repository_root(),
        &[
            "build-image",
            "--dry-run",
            "--registry",
            "localhost",
            "--image",
            "rc-web-dry-run",
            "--platform",
            "linux/arm64",
            "--tag",
            "dry",
        ],
        &[],
    );
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        // podman is never given SOURCE_DATE_EPOCH: the date is --timestamp.
        stdout.lines().any(|line| line.starts_with(
            "env -u SOURCE_DATE_EPOCH podman build --platform linux/arm64 --manifest \
             localhost/rc-web-dry-run:build-"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("podman tag localhost/rc-web-dry-run:build-")
            && stdout.contains(" localhost/rc-web-dry-run:dry"),
        "{stdout}"
    );
    let status = Command::new("podman")
        .args(["manifest", "exists", "localhost/rc-web-dry-run:dry"])
        .status()
        .unwrap();
    assert!(!status.success(), "a dry run must not create the list");
}

/// The image layer of each platform's entry, bottom first.
fn layers(list: &str) -> Vec<(String, Vec<String>)> {
    let mut entries = local_entries(list);
    entries.sort();
    entries
        .into_iter()
        .map(|(platform, digest)| {
            let layers = podman(&[
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                &entry_image(list, &digest),
            ]);
            (platform, serde_json::from_str(&layers).unwrap())
        })
        .collect()
}

/// The image links rc-web against its dependency library, which sits in a
/// layer of its own: after a commit that changes rc-web's code, built with no
/// layer cache (as on a fresh CI runner), every layer but the binary's is the
/// one the release before had (so a push uploads, and a pull fetches, only
/// that one), and the new binary runs with the old library. One platform
/// shows it (both are compiled by the same build stage, and both platforms'
/// builds are the subject of `rc_web_builds_for_both_platforms...`): the
/// two clean builds of rc-web were this suite's costliest test.
#[test]
fn a_code_change_replaces_only_the_binary_layer() {
    let _serial = serial();
    let before = TaggedClone::new("layers-before", "v0.0.1");
    let after = TaggedClone::new("layers-after", "v0.0.2");
    let source = after.path.join("rc-web/src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(text.contains("Hello, {name}!"), "rc-web's greeting moved");
    std::fs::write(
        &source,
        text.replacen("Hello, {name}!", "Hello again, {name}!", 1),
    )
    .unwrap();
    // A commit of its own, an hour later: the next release's layers are dated
    // by its commit (`--timestamp`), and the library's must stay all the same,
    // even built with no layer cache, as on a fresh CI runner.
    let head_time: i64 = run(
        "git",
        &[
            "-C",
            &after.path.to_string_lossy(),
            "log",
            "-1",
            "--format=%ct",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    let committed = Command::new("git")
        .arg("-C")
        .arg(&after.path)
        .args([
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@example.invalid",
        ])
        .args(["commit", "--quiet", "--all", "--message", "Greet again"])
        .env("GIT_COMMITTER_DATE", format!("@{} +0000", head_time + 3600))
        .status()
        .unwrap();
    assert!(committed.success(), "git commit in the clone");

    let lists = [
        format!("{REGISTRY}/{IMAGE}-layers:before"),
        format!("{REGISTRY}/{IMAGE}-layers:after"),
    ];
    let _cleanup = Lists(lists.to_vec());
    let image = format!("{IMAGE}-layers");
    for (clone, list, cache) in [
        (&before, &lists[0], None),
        (&after, &lists[1], Some("--no-cache")),
    ] {
        let tag = list.rsplit(':').next().unwrap();
        let mut args = vec![
            "build-image",
            "--registry",
            REGISTRY,
            "--image",
            &image,
            "--tag",
            tag,
            "--platform",
            "linux/amd64",
        ];
        args.extend(cache);
        let output = xtask_in(&clone.path, &args, &[]);
        assert!(output.status.success(), "build-image of {list} failed");
    }
    // The lists of the first two build steps are gone; only the tags remain.
    let names = run(
        "podman",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    );
    let left: Vec<&str> = names
        .lines()
        .filter(|name| name.contains(&format!("{IMAGE}-layers:build-")))
        .collect();
    assert!(left.is_empty(), "the build's own lists were left: {left:?}");

    // The project's runtime base, which the Containerfile builds on.
    let base = layers("localhost/rc-base/runtime:bookworm");
    let (before_layers, after_layers) = (layers(&lists[0]), layers(&lists[1]));
    assert_eq!(before_layers.len(), 1, "{before_layers:?}");
    for (((platform, base), (_, old)), (_, new)) in
        base.iter().zip(&before_layers).zip(&after_layers)
    {
        let layers = format!("base {base:?}, before {old:?}, after {new:?}");
        assert_eq!(
            (old.len(), new.len()),
            (base.len() + 2, base.len() + 2),
            "{platform}: the base's layers, the library's, the binary's: {layers}"
        );
        assert_eq!(&new[..base.len()], &base[..], "{platform}: {layers}");
        assert_eq!(
            old[base.len()],
            new[base.len()],
            "{platform}: the dependency library's layer stays: {layers}"
        );
        assert_ne!(
            old[base.len() + 1],
            new[base.len() + 1],
            "{platform}: the binary's layer changes: {layers}"
        );
    }

    let mut entries = local_entries(&lists[1]);
    entries.sort();
    for (platform, digest) in &entries {
        let (_container, port) = start(&lists[1], platform, digest);
        let (status, body) = http_get(port, "/hello?name=e2e").expect("/hello answers");
        assert_eq!(status, 200, "{platform} /hello: {body}");
        assert!(
            body.contains("Hello again, e2e!"),
            "{platform}: the new binary runs on the old library: {body}"
        );
    }
}

/// Local lists removed however the test ends.
struct Lists(Vec<String>);

impl Drop for Lists {
    fn drop(&mut self) {
        for list in &self.0 {
            let _ = Command::new("podman")
                .args(["manifest", "rm", list])
                .output();
        }
    }
}

/// `path` out of `image` (which need not run here), into a scratch file.
fn copy_out(image: &str, path: &str) -> std::path::PathBuf {
    let directory = support::scratch_dir("copy-out");
    let container = podman(&["create", image]).trim().to_owned();
    let target = directory.join("binary");
    let copied = std::process::Command::new("podman")
        .args([
            "cp",
            &format!("{container}:{path}"),
            target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    podman(&["rm", &container]);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    target
}
