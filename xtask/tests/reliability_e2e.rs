//! docs/reliability.md, tested: bad input and an unready machine are refused
//! before anything is built; a signal stops podman and leaves no half-made
//! list; a registry that goes away mid-push gets retries, an exact report and a
//! rerun that finishes; credentials never show in argv or logs.
//!
//! Real podman, a real registry on 127.0.0.1, real signals.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use support::*;

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Local images named `repository:*` (lists included).
fn local_tags(repository: &str) -> Vec<String> {
    podman(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("reference={repository}"),
    ])
    .lines()
    .filter(|line| !line.is_empty())
    .map(str::to_owned)
    .collect()
}

fn remove_lists(repository: &str) {
    for name in local_tags(repository) {
        let _ = Command::new("podman")
            .args(["manifest", "rm", &name])
            .output();
    }
}

#[test]
fn bad_input_is_refused_with_the_fix_and_nothing_is_built() {
    let _serial = serial();
    let directory = small_image(&repository_root(), "bad-input");
    let [_, file, _, context] = file_and_context(&directory);
    let long_tag = "a".repeat(129);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--platform", "amd64"],
            "is not of the form os/architecture",
        ),
        (
            &["--platform", "linux-amd64"],
            "is not of the form os/architecture",
        ),
        (&["--platform", "linux/"], "missing its os or architecture"),
        (&["--platform", "/arm64"], "missing its os or architecture"),
        (
            &["--platform", "linux/amd64,,linux/arm64"],
            "has an empty item",
        ),
        (
            &["--platform", "linux/amd64,linux/amd64"],
            "names linux/amd64 twice",
        ),
        (
            &["--platform", "linux/s390x"],
            "is not provided by the base images",
        ),
        (&["--platform", "linux/x86_64"], "spell it linux/amd64"),
        (
            &["--platform", "windows/amd64"],
            "os \"windows\" is not supported",
        ),
        (&["--image", "Bad-Input-E2E"], "has uppercase letters"),
        (&["--image", "bad input"], "is not valid"),
        (&["--image", "bad-input-e2e:v1"], "contains a tag or digest"),
        (&["--tag", &long_tag], "tags may have at most 128"),
        (&["--tag", "v1,bad tag"], "tags may contain only"),
        (&["--tag", ".hidden"], "tag \".hidden\""),
        (
            &["--registry", "https://ghcr.io"],
            "give the host only: --registry ghcr.io",
        ),
        (
            &["--file", "/nonexistent/Containerfile"],
            "does not exist; pass --file PATH",
        ),
        (
            &["--context", "/nonexistent"],
            "is not a directory; pass --context DIR",
        ),
        (&["--build-arg", "NOEQUALS"], "write it as NAME=VALUE"),
    ];
    let before = local_tags("localhost/bad-input-e2e");
    for (arguments, expected) in cases {
        let defaults = [
            ("--image", "bad-input-e2e"),
            ("--registry", "localhost"),
            ("--tag", "v1"),
            ("--file", file.as_str()),
            ("--context", context.as_str()),
        ];
        let mut full = vec!["build-image"];
        for (flag, value) in defaults {
            if !arguments.contains(&flag) {
                full.extend([flag, value]);
            }
        }
        full.extend(arguments.iter().copied());
        let output = xtask_in(&repository_root(), &full, &[]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{arguments:?}: expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains("$ podman"),
            "{arguments:?} ran podman: {stderr}"
        );
    }

    // Every problem is named at once, not one per run.
    let output = xtask_in(
        &repository_root(),
        &[
            "build-image",
            "--image",
            "Bad",
            "--file",
            "/nope",
            "--context",
            "/nope2",
        ],
        &[],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2));
    for problem in [
        "/nope does not exist",
        "/nope2 is not a directory",
        "uppercase",
    ] {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    // The flags' own problems too, with the tag's (one run, every problem).
    let output = xtask_in(
        &repository_root(),
        &[
            "build-image",
            "--platform",
            "linux/riscv64",
            "--build-arg",
            "=x",
            "--tag",
            "a+b",
        ],
        &[],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for problem in ["linux/riscv64", "--build-arg \"=x\"", "tag \"a+b\""] {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
    // push-by-digest builds one platform; merge needs digest files.
    let output = xtask_in(
        &repository_root(),
        &[
            "push-by-digest",
            "--digest-file",
            "/tmp/rc-e2e-unused-digest",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output)
        .contains("push-by-digest builds one platform, not linux/amd64,linux/arm64"));
    let empty = scratch_dir("no-digests");
    let output = xtask_in(
        &repository_root(),
        &["merge", "--digests-dir", empty.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("did every build job fail?"));
    let _ = std::fs::remove_dir_all(empty);

    // The same for push-image and build-and-push.
    for command in ["push-image", "build-and-push"] {
        let output = xtask_in(
            &repository_root(),
            &[command, "--registry", "https://ghcr.io", "--tag", "v1"],
            &[],
        );
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert!(stderr_of(&output).contains("has a scheme"), "{command}");
    }
    assert_eq!(
        local_tags("localhost/bad-input-e2e"),
        before,
        "nothing was built"
    );
    let _ = std::fs::remove_dir_all(directory);
}

/// The names a dry run's `podman tag` gives the list.
fn tags_in_plan(plan: &str) -> Vec<String> {
    let line = plan
        .lines()
        .find(|line| line.starts_with("podman tag "))
        .unwrap_or_else(|| panic!("no podman tag in the plan: {plan}"));
    line.split_whitespace().skip(3).map(str::to_owned).collect()
}

#[test]
fn git_states_are_detected_and_explained() {
    let _serial = serial();
    // Not a git repository: a copy of the tree without .git.
    // (a source tarball's: `git archive`, unpacked).
    let bare = scratch_dir("not-git");
    let archive = bare.join("source.tar");
    run(
        "git",
        &[
            "-C",
            &repository_root().to_string_lossy(),
            "archive",
            "--output",
            &archive.to_string_lossy(),
            "HEAD",
        ],
    );
    run(
        "tar",
        &[
            "-x",
            "-f",
            &archive.to_string_lossy(),
            "-C",
            &bare.to_string_lossy(),
        ],
    );
    std::fs::remove_file(&archive).unwrap();
    let output = xtask_in(&bare, &["build-image", "--dry-run"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("is not inside a git repository"));
    let _ = std::fs::remove_dir_all(&bare);

    // A version-like tag that is not semver is refused, not ignored.
    let clone = TaggedClone::new("not-semver", "v1.2");
    let output = xtask_in(&clone.path, &["build-image", "--dry-run"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("\"v1.2\" on HEAD looks like a version but is not semver"));

    // Detached HEAD on a release tag (how CI checks out a tag): the release's tags.
    let clone = TaggedClone::new("detached", "v3.4.5");
    let path = clone.path.to_string_lossy().into_owned();
    run("git", &["-C", &path, "checkout", "--quiet", "--detach"]);
    let plan_in = |path: &std::path::Path| {
        xtask_in(
            path,
            &[
                "build-image",
                "--dry-run",
                "--registry",
                "localhost",
                "--image",
                "git-e2e",
            ],
            &[],
        )
    };
    let output = plan_in(&clone.path);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let tagged = tags_in_plan(&String::from_utf8_lossy(&output.stdout));
    let expected: Vec<String> = ["v3.4.5", &clone.short_commit(), "latest"]
        .iter()
        .map(|tag| format!("localhost/git-e2e:{tag}"))
        .collect();
    assert_eq!(tagged, expected);
    // Detached without a tag: the commit only, and a note says why.
    run("git", &["-C", &path, "tag", "--delete", "v3.4.5"]);
    let output = plan_in(&clone.path);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        tags_in_plan(&String::from_utf8_lossy(&output.stdout)),
        [format!("localhost/git-e2e:{}", clone.short_commit())]
    );
    assert!(stderr_of(&output).contains("HEAD is detached and has no version tag"));

    // A shallow clone without tags (actions/checkout's default) is explained.
    let shallow = scratch_dir("shallow");
    run(
        "git",
        &[
            "clone",
            "--quiet",
            "--depth",
            "1",
            &format!("file://{}", repository_root().display()),
            &shallow.to_string_lossy(),
        ],
    );
    let output = xtask_in(&shallow, &["build-image", "--dry-run"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("fetch-depth: 0"),
        "{}",
        stderr_of(&output)
    );
    let _ = std::fs::remove_dir_all(&shallow);
}

/// Unregisters a binfmt handler for the test; registers it again on drop.
struct BinfmtUnregistered(&'static str);

impl BinfmtUnregistered {
    fn new(name: &'static str) -> BinfmtUnregistered {
        std::fs::write(format!("/proc/sys/fs/binfmt_misc/{name}"), "-1").unwrap();
        BinfmtUnregistered(name)
    }
}

impl Drop for BinfmtUnregistered {
    fn drop(&mut self) {
        if !Path::new(&format!("/proc/sys/fs/binfmt_misc/{}", self.0)).exists() {
            let output = xtask_in(&repository_root(), &["setup", "--no-cargo-make"], &[]);
            assert!(output.status.success(), "setup re-registers {}", self.0);
        }
    }
}

#[test]
fn a_plain_image_under_a_base_lists_name_gives_the_name_up_and_is_kept() {
    let _serial = serial();
    // The Debian base's list, replaced by a plain image of that name (as
    // `podman load` or `podman tag` by hand leave it).
    let list = "localhost/rc-base/debian:bookworm";
    let image = "localhost/rc-base/debian:bookworm-amd64";
    let image_id = podman(&["image", "inspect", "--format", "{{.Id}}", image]);
    podman(&["manifest", "rm", list]);
    podman(&["tag", image, list]);
    assert!(!podman_succeeds(&["manifest", "exists", list]));

    let output = xtask_in(&repository_root(), &["base-images"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("names a plain image, not a list; taking the name from it"),
        "{}",
        stderr_of(&output)
    );
    assert!(
        podman_succeeds(&["manifest", "exists", list]),
        "the list is back"
    );
    assert_eq!(
        podman(&["image", "inspect", "--format", "{{.Id}}", image]),
        image_id,
        "the image that held the name is still there"
    );
}

#[test]
fn an_unready_machine_is_refused_with_the_fix() {
    let _serial = serial();
    let directory = small_image(&repository_root(), "machine");
    let source = file_and_context(&directory);
    let build = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "build-image",
            "--registry",
            "localhost",
            "--image",
            "machine-e2e",
            "--tag",
            "v1",
        ];
        args.extend(source.iter().map(String::as_str));
        args.extend(extra);
        xtask_in(&repository_root(), &args, env)
    };

    // podman missing (nothing on PATH), with --no-setup: named, with the fix.
    let empty = scratch_dir("empty-path");
    let output = build(&["--no-setup"], &[("PATH", empty.to_str().unwrap())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output)
        .contains("podman is not installed (or not on PATH); run `sudo cargo xtask setup`"));

    // podman older than 4.3: a podman that reports 4.2.0 and otherwise is podman.
    let old = scratch_dir("old-podman");
    let shim = old.join("podman");
    std::fs::write(
        &shim,
        "#!/bin/sh\ncase \"$1\" in\n\
         version) echo 4.2.0 ;;\n\
         info) /usr/bin/podman \"$@\" | sed 's/\"Version\": \"[^\"]*\"/\"Version\": \"4.2.0\"/' ;;\n\
         *) exec /usr/bin/podman \"$@\" ;;\n\
         esac\n",
    )
    .unwrap();
    run("chmod", &["+x", shim.to_str().unwrap()]);
    let path = format!("{}:/usr/bin:/bin", old.display());
    let output = build(&["--no-setup"], &[("PATH", &path)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("podman 4.2.0 is too old"));

    // arm64 requested while qemu's binfmt handler is not registered.
    {
        let _unregistered = BinfmtUnregistered::new("qemu-aarch64");
        let output = build(&["--no-setup"], &[]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("linux/arm64 runs under qemu emulation")
                && stderr.contains("sudo cargo xtask setup")
                && stderr.contains("BUILD_PLATFORMS=linux/amd64"),
            "{stderr}"
        );
        // amd64 alone needs no emulation.
        let output = build(
            &["--no-setup", "--dry-run", "--platform", "linux/amd64"],
            &[],
        );
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    }
    assert!(Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists());

    // Podman storage on a filesystem below the minimum: a 64 MiB tmpfs.
    let small = scratch_dir("small-disk");
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "tmpfs",
            small.to_str().unwrap(),
        ],
    );
    let storage_conf = small.join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            small.display()
        ),
    )
    .unwrap();
    let conf = storage_conf.to_str().unwrap();
    let output = build(&[], &[("CONTAINERS_STORAGE_CONF", conf)]);
    let stderr = stderr_of(&output);
    let report = xtask_in(
        &repository_root(),
        &["check-disk-space", "--json"],
        &[("CONTAINERS_STORAGE_CONF", conf)],
    );
    let _ = Command::new("podman")
        .env("CONTAINERS_STORAGE_CONF", conf)
        .args(["system", "reset", "--force"])
        .output();
    run("umount", &["--lazy", small.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("below the 15 GB minimum for a multi-platform build")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!stderr.contains("$ podman build"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(
        report.to_string().contains(&small.display().to_string()),
        "check-disk-space measures that filesystem: {report}"
    );

    assert!(
        local_tags("localhost/machine-e2e").is_empty(),
        "nothing was built"
    );
    for path in [directory, empty, old, small] {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// A build whose first stage sleeps, so a signal arrives mid-build, on both
/// platforms at once. `marker` makes the step unique (never a cache hit) and
/// findable in /proc.
fn slow_image(marker: &str) -> PathBuf {
    let directory = context_dir(&repository_root(), "slow");
    std::fs::write(
        directory.join("Containerfile"),
        format!(
            "ARG BUILDPLATFORM\nARG TARGETPLATFORM\n\
             FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS slow\n\
             RUN echo {marker} && sleep 300 && touch /done\n\
             FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
             COPY --from=slow /done /done\n"
        ),
    )
    .unwrap();
    directory
}

fn build_containers() -> Vec<String> {
    let mut ids: Vec<String> = podman(&["ps", "--all", "--external", "--quiet", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_signal_stops_podman_removes_what_the_run_made_and_moves_no_tag() {
    let _serial = serial();
    remove_lists("localhost/interrupt-e2e");
    // The release tag the interrupted build would move.
    podman(&["manifest", "create", "localhost/interrupt-e2e:v1"]);
    let release_before = podman(&["manifest", "inspect", "localhost/interrupt-e2e:v1"]);
    for (signal_name, exit_code) in [("TERM", 143), ("INT", 130)] {
        let marker = format!(
            "interrupt-e2e-{}-{signal_name}-{}",
            std::process::id(),
            rand_suffix()
        );
        let directory = slow_image(&marker);
        let containers_before = build_containers();
        let log = directory.join("xtask.log");
        let mut xtask = Command::new(env!("CARGO_BIN_EXE_podman-release"))
            .current_dir(repository_root())
            .args([
                "build-image",
                "--registry",
                "localhost",
                "--image",
                "interrupt-e2e",
                "--tag",
                "v1",
            ])
            .args(file_and_context(&directory))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_until("the RUN step is running", Duration::from_secs(120), || {
            !processes_with(&format!("echo {marker}")).is_empty()
        });

        signal(xtask.id(), signal_name);
        let status = wait_for_exit(&mut xtask, Duration::from_secs(60));
        let stderr = std::fs::read_to_string(&log).unwrap();
        eprintln!("--- interrupted xtask (SIG{signal_name}):\n{stderr}");
        assert_eq!(
            status.code(),
            Some(exit_code),
            "exit code for SIG{signal_name}"
        );
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal_name}")),
            "{stderr}"
        );
        wait_until(
            "the RUN processes are gone",
            Duration::from_secs(10),
            || processes_with(&marker).is_empty(),
        );
        assert_eq!(
            build_containers(),
            containers_before,
            "no build container is left"
        );
        assert_eq!(
            local_tags("localhost/interrupt-e2e"),
            ["localhost/interrupt-e2e:v1"],
            "no temporary list is left"
        );
        assert_eq!(
            podman(&["manifest", "inspect", "localhost/interrupt-e2e:v1"]),
            release_before,
            "the release tag still names the list it named before"
        );
        let _ = std::fs::remove_dir_all(directory);
    }
    podman(&["manifest", "rm", "localhost/interrupt-e2e:v1"]);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Builds the small image into local lists named for `host`.
fn build_small(host: &str, image: &str, tags: &str, directory: &Path) {
    let mut args = vec![
        "build-image",
        "--registry",
        host,
        "--image",
        image,
        "--tag",
        tags,
    ];
    let source = file_and_context(directory);
    args.extend(source.iter().map(String::as_str));
    let output = xtask_in(&repository_root(), &args, &[]);
    assert_eq!(output.status.code(), Some(0), "build of the small image");
}

#[test]
fn a_registry_that_goes_away_mid_push_gets_retries_an_exact_report_and_a_rerun_finishes() {
    let _serial = serial();
    let registry = Registry::start("flaky");
    let proxy = FlakyProxy::start(registry.port);
    let directory = small_image(&repository_root(), "flaky");
    build_small(&proxy.host(), "rc-web", "v2.0.0,abc1234,latest", &directory);
    // The registry goes away when the first tag is in and the next index is
    // being put (the tags after the first are pushed at the same time).
    proxy.cut_when_seen(&["/manifests/abc1234 ", "/manifests/latest "]);
    let push = [
        "push-image",
        "--registry",
        &proxy.host(),
        "--image",
        "rc-web",
        "--tag",
        "v2.0.0,abc1234,latest",
        "--tls-verify",
        "false",
        "--attempts",
        "3",
    ];
    let output = xtask_in(&repository_root(), &push, &[]);
    let stderr = stderr_of(&output);
    assert!(proxy.is_cut(), "the registry went away during the push");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("attempt 1 of 3 failed; retrying in 1 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("attempt 2 of 3 failed; retrying in 2 s"),
        "backoff doubles: {stderr}"
    );
    assert!(
        stderr.contains("updated in the registry: v2.0.0; NOT updated: abc1234, latest")
            && stderr.contains("Run the same command again to finish"),
        "{stderr}"
    );
    assert_eq!(
        registry.tags("rc-web"),
        ["v2.0.0"],
        "what the report says is what the registry holds"
    );

    proxy.restore();
    let output = xtask_in(&repository_root(), &push, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the rerun finishes: {}",
        stderr_of(&output)
    );
    assert_eq!(registry.tags("rc-web"), ["abc1234", "latest", "v2.0.0"]);
    for tag in ["abc1234", "latest", "v2.0.0"] {
        assert_eq!(
            index_platforms(&registry.index("rc-web", tag)),
            ["linux/amd64", "linux/arm64"],
            "{tag}"
        );
    }
    remove_lists(&format!("{}/rc-web", proxy.host()));
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn an_unreachable_registry_or_wrong_credentials_stop_build_and_push_before_the_build() {
    let _serial = serial();
    let directory = small_image(&repository_root(), "refused");
    let source = file_and_context(&directory);
    let build_and_push = |host: &str, env: &[(&str, &str)]| {
        let mut args = vec![
            "build-and-push",
            "--registry",
            host,
            "--image",
            "refused-e2e",
            "--tag",
            "v1",
            "--tls-verify",
            "false",
        ];
        args.extend(source.iter().map(String::as_str));
        xtask_in(&repository_root(), &args, env)
    };

    // Nothing listens on this port.
    let nobody = format!("127.0.0.1:{}", free_loopback_port());
    let output = build_and_push(&nobody, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the registry {nobody}"))
            && stderr.contains("check --registry"),
        "{stderr}"
    );
    assert!(!stderr.contains("$ podman build"), "{stderr}");
    assert!(local_tags(&format!("{nobody}/refused-e2e")).is_empty());

    let registry = Registry::start_with_auth("refused", Some(("ci-bot", "right-password-e2e")));
    let output = build_and_push(
        &registry.host(),
        &[
            ("REGISTRY_USER", "ci-bot"),
            ("REGISTRY_TOKEN", "wrong-password-e2e"),
        ],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} refused the login of ci-bot (credentials from REGISTRY_USER/REGISTRY_TOKEN)",
            registry.host()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("$ podman build"),
        "nothing was built: {stderr}"
    );
    assert!(!stderr.contains("wrong-password-e2e"), "{stderr}");
    assert!(registry.stored_tags("refused-e2e").is_empty());
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn a_push_with_credentials_succeeds_and_the_secret_never_shows_in_argv_or_logs() {
    let _serial = serial();
    let secret = format!("s3cret-{}-{}", std::process::id(), rand_suffix());
    let registry = Registry::start_with_auth("secret", Some(("ci-bot", &secret)));
    let directory = small_image(&repository_root(), "secret");
    build_small(&registry.host(), "rc-web", "v1.0.0,latest", &directory);
    let auth_dirs_before = auth_dirs();

    // Every process's argv, and every child's environment, is scanned
    // while the push runs.
    let (output, leaks, pushes_seen) = support::xtask_scanned_for(
        &secret,
        &repository_root(),
        &[
            "push-image",
            "--registry",
            &registry.host(),
            "--image",
            "rc-web",
            "--tag",
            "v1.0.0,latest",
            "--tls-verify",
            "false",
        ],
        &[("REGISTRY_USER", "ci-bot"), ("REGISTRY_TOKEN", &secret)],
        |line| line.contains("podman manifest push") || line.contains("podman login"),
    );

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(registry.stored_tags("rc-web"), ["latest", "v1.0.0"]);
    assert!(pushes_seen > 0, "the scan ran while podman pushed");
    assert!(
        leaks.is_empty(),
        "the secret is in a command line or a child's environment: {leaks:?}"
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr_of(&output)
    );
    assert!(!log.contains(&secret), "the secret is in the output");
    assert!(
        log.contains("logging in to") && log.contains("as ci-bot"),
        "{log}"
    );
    assert_eq!(
        auth_dirs(),
        auth_dirs_before,
        "the private auth file is removed"
    );
    let _ = std::fs::remove_dir_all(directory);
}

fn auth_dirs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("rc-xtask-auth-"))
        .collect();
    names.sort();
    names
}
