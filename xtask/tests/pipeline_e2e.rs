//! End-to-end tests of the release pipeline: real podman and qemu, a real
//! registry on 127.0.0.1, skopeo to check what the registry holds.

mod support;

use support::*;

const BOTH: [&str; 2] = ["linux/amd64", "linux/arm64"];

#[test]
fn build_and_push_puts_every_tag_in_the_registry_with_both_platforms() {
    let _serial = serial();
    let registry = Registry::start("both");
    let clone = TaggedClone::new("both", "v9.8.7");
    // The pipeline is the subject, not rc-web: a small two-platform image
    // (tags still from the clone's git).
    let directory = small_image(&clone.path, "both-image");
    let source = file_and_context(&directory);
    let host = registry.host();
    let mut args = vec![
        "build-and-push",
        "--registry",
        &host,
        "--image",
        "rc-web",
        "--tls-verify",
        "false",
    ];
    args.extend(source.iter().map(String::as_str));

    let output = xtask_in(&clone.path, &args, &[]);
    assert_eq!(output.status.code(), Some(0), "build-and-push failed");
    let mut expected_tags = vec![
        "latest".to_owned(),
        clone.short_commit(),
        "v9.8.7".to_owned(),
    ];
    expected_tags.sort();
    assert_eq!(
        registry.tags("rc-web"),
        expected_tags,
        "the registry holds every tag"
    );
    for tag in &expected_tags {
        let index = registry.index("rc-web", tag);
        assert_eq!(
            index_platforms(&index),
            BOTH,
            "{tag} is an index with both platforms"
        );
        assert!(
            index.contains("application/vnd.oci.image.index.v1+json"),
            "{tag} is an OCI index: {index}"
        );
    }

    // A rerun replaces, never accumulates: locally and in the registry.
    let first_list = podman(&[
        "images",
        "--noheading",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        &format!("{host}/rc-web:v9.8.7"),
    ])
    .lines()
    .next()
    .unwrap_or_default()
    .to_owned();
    let output = xtask_in(&clone.path, &args, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "second build-and-push failed"
    );
    assert!(
        !first_list.is_empty() && !podman_succeeds(&["manifest", "exists", &first_list]),
        "the first run's list {first_list:?} went with its last tag, not left unnamed"
    );
    assert_eq!(local_platforms(&format!("{host}/rc-web:v9.8.7")), BOTH);
    for tag in &expected_tags {
        assert_eq!(
            index_platforms(&registry.index("rc-web", tag)),
            BOTH,
            "{tag} after the rerun"
        );
    }
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn a_single_platform_build_is_built_and_pushed() {
    let _serial = serial();
    let registry = Registry::start("single");
    let clone = TaggedClone::new("single", "v1.0.0");
    let directory = small_image(&clone.path, "single-image");
    let host = registry.host();
    let mut args = vec!["build-and-push", "--tag", "amd64-only", "--format", "v2s2"];
    let source = file_and_context(&directory);
    args.extend(source.iter().map(String::as_str));
    let output = xtask_in(
        &clone.path,
        &args,
        &[
            ("BUILD_PLATFORMS", "linux/amd64"),
            ("REGISTRY", &host),
            ("IMAGE_NAME", "rc-web"),
            ("REGISTRY_TLS_VERIFY", "false"),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "build-and-push of linux/amd64 failed"
    );
    assert_eq!(registry.tags("rc-web"), ["amd64-only"]);
    let index = registry.index("rc-web", "amd64-only");
    assert_eq!(index_platforms(&index), ["linux/amd64"]);
    assert!(
        index.contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "--format v2s2: {index}"
    );
    let _ = std::fs::remove_dir_all(directory);
}

/// podman 4.3 orders a multi-platform build's entries differently from one
/// build to the next (seen: `[arm64, amd64]` about three times in four for
/// `--platform linux/amd64,linux/arm64`). The registry must still get the
/// platforms in the order they were asked for, or one commit's list digest
/// would change from run to run.
#[test]
fn the_pushed_list_has_the_platforms_in_the_requested_order() {
    const REORDERED: &str = "in the requested order";
    let _serial = serial();
    let registry = Registry::start("order");
    let clone = TaggedClone::new("order", "v9.8.6");
    let directory = context_dir(&clone.path, "order");
    std::fs::write(
        directory.join("Containerfile"),
        "ARG BUILDPLATFORM\n\
         FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS work\n\
         ARG TARGETARCH\n\
         RUN echo \"$TARGETARCH\" > /arch\n\
         FROM localhost/rc-base/runtime:bookworm\n\
         COPY --from=work /arch /arch\n",
    )
    .unwrap();
    let host = registry.host();
    let run = |command: &str, platforms: &str, tag: &str| {
        let output = xtask_in(
            &clone.path,
            &[
                command,
                "--platform",
                platforms,
                "--tag",
                tag,
                "--registry",
                &host,
                "--image",
                "order",
                "--file",
                directory.join("Containerfile").to_str().unwrap(),
                "--context",
                directory.to_str().unwrap(),
            ]
            .into_iter()
            .chain(
                (command == "build-and-push")
                    .then_some(["--tls-verify", "false"])
                    .into_iter()
                    .flatten(),
            )
            .collect::<Vec<_>>(),
            &[("XTASK_TIMINGS", "1")],
        );
        assert_eq!(output.status.code(), Some(0), "{command} {platforms}");
        let local = platforms_in_order(&podman(&[
            "manifest",
            "inspect",
            &format!("{host}/order:{tag}"),
        ]));
        let _ = std::process::Command::new("podman")
            .args(["manifest", "rm", &format!("{host}/order:{tag}")])
            .output();
        (String::from_utf8_lossy(&output.stderr).into_owned(), local)
    };

    let (first, local) = run("build-and-push", "linux/amd64,linux/arm64", "amd64-first");
    assert_eq!(local, ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        platforms_in_order(&registry.index("order", "amd64-first")),
        ["linux/amd64", "linux/arm64"]
    );
    let (second, local) = run("build-and-push", "linux/arm64,linux/amd64", "arm64-first");
    assert_eq!(local, ["linux/arm64", "linux/amd64"]);
    assert_eq!(
        platforms_in_order(&registry.index("order", "arm64-first")),
        ["linux/arm64", "linux/amd64"]
    );

    // The order above must not be podman's luck: build (from cache) until
    // podman gets it wrong at least once, and check each result.
    let mut reordering = [first, second]
        .into_iter()
        .find(|stderr| stderr.contains(REORDERED));
    for round in 0..10 {
        if reordering.is_some() {
            break;
        }
        let (stderr, local) = run(
            "build-image",
            "linux/amd64,linux/arm64",
            &format!("round-{round}"),
        );
        assert_eq!(local, ["linux/amd64", "linux/arm64"], "{stderr}");
        reordering = stderr.contains(REORDERED).then_some(stderr);
    }
    let reordering = reordering.expect(
        "podman kept the requested order in 12 builds, so the reordering was never exercised",
    );
    // The entries' images are looked for among those with the release's
    // revision label: reading every image of a busy storage takes seconds.
    assert!(
        reordering
            .contains("podman images --all --filter label=org.opencontainers.image.revision="),
        "{reordering}"
    );
    assert!(
        !reordering.contains("podman images --all --format json"),
        "every image was read: {reordering}"
    );
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn when_arm64_fails_the_fallback_keeps_amd64_and_leaves_latest_alone() {
    let _serial = serial();
    let clone = TaggedClone::new("fallback", "v9.8.8");
    let directory = support::containerfile_failing_for_arm64(&clone.path, "arm64-fails");
    let containerfile = directory.join("Containerfile");
    let (file, context) = (containerfile.to_str().unwrap(), directory.to_str().unwrap());
    let image = [
        "--registry",
        "localhost",
        "--image",
        "fallback-e2e",
        "--file",
        file,
        "--context",
        context,
    ];
    let commit = clone.short_commit();
    let names = ["latest", "previous", "v9.8.8", "strict-run", &commit];
    for name in names {
        let _ = std::process::Command::new("podman")
            .args(["manifest", "rm", &format!("localhost/fallback-e2e:{name}")])
            .output();
    }

    // An earlier good release owns `latest`.
    let earlier = xtask_in(
        &clone.path,
        &[
            &[
                "build-image",
                "--platform",
                "linux/amd64",
                "--tag",
                "previous,latest",
            ][..],
            &image,
        ]
        .concat(),
        &[],
    );
    assert_eq!(earlier.status.code(), Some(0));
    let latest_before = local_digests("localhost/fallback-e2e:latest");

    let output = xtask_in(&clone.path, &[&["build-image"][..], &image].concat(), &[]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a partial result exits with 3"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("falling back to building each platform on its own"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FAILED:  linux/arm64"),
        "the failed platform is named in the summary: {stderr}"
    );
    assert!(stderr.contains("skipped: latest"), "{stderr}");
    assert_eq!(
        local_platforms("localhost/fallback-e2e:v9.8.8"),
        ["linux/amd64"]
    );
    assert_eq!(
        local_digests("localhost/fallback-e2e:latest"),
        latest_before,
        "latest is untouched by a partial result"
    );

    let strict = xtask_in(
        &clone.path,
        &[
            &["build-image", "--strict", "--tag", "strict-run"][..],
            &image,
        ]
        .concat(),
        &[],
    );
    assert_eq!(strict.status.code(), Some(1), "--strict fails instead");
    assert!(
        !podman_succeeds(&["manifest", "exists", "localhost/fallback-e2e:strict-run"]),
        "--strict tags nothing"
    );

    for name in ["latest", "previous", "v9.8.8", &commit] {
        podman(&["manifest", "rm", &format!("localhost/fallback-e2e:{name}")]);
    }
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn nothing_built_fails_with_advice() {
    let _serial = serial();
    let directory = context_dir(&repository_root(), "all-fail");
    std::fs::write(
        directory.join("Containerfile"),
        "ARG BUILDPLATFORM\nFROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm\nRUN exit 1\n",
    )
    .unwrap();
    let containerfile = directory.join("Containerfile");
    let output = xtask_in(
        &repository_root(),
        &[
            "build-image",
            "--registry",
            "localhost",
            "--image",
            "nothing-e2e",
            "--tag",
            "x",
            "--file",
            containerfile.to_str().unwrap(),
            "--context",
            directory.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no platform built") && stderr.contains("check-disk-space"),
        "{stderr}"
    );
    assert!(!podman_succeeds(&[
        "manifest",
        "exists",
        "localhost/nothing-e2e:x"
    ]));
    let _ = std::fs::remove_dir_all(directory);
}

/// cargo-make runs the xtask through cargo; a target directory of its own
/// keeps it from waiting on the one this test binary was built in.
fn cargo_make(task: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new("cargo");
    command
        .current_dir(repository_root())
        .args(["make", task])
        .args(args)
        .env(
            "CARGO_TARGET_DIR",
            repository_root().join("target/cargo-make-e2e"),
        );
    for name in ["BUILD_PLATFORMS", "REGISTRY", "IMAGE_NAME", "TAG"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut output = command
        .output()
        .expect("cargo-make is installed (run `cargo xtask setup`)");
    // cargo-make logs to stdout; keep only the task's own output there.
    let task_stdout: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.contains("[cargo-make]"))
        .collect();
    output.stdout = task_stdout.join("\n").into_bytes();
    eprintln!(
        "--- cargo make {task} {args:?}: {:?}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn every_cargo_make_task_runs() {
    let _serial = serial();
    let registry = Registry::start("make");
    let host = registry.host();
    let env = [
        ("REGISTRY", host.as_str()),
        ("IMAGE_NAME", "rc-web"),
        ("TAG", "make-e2e"),
        ("REGISTRY_TLS_VERIFY", "false"),
    ];

    // Real where cheap: the disk report, an amd64 build of a small image
    // (the task's extra arguments reach the xtask: `--file`, `--context`),
    // its push.
    let report = cargo_make("check-disk-space", &["--json"], &env);
    assert!(report.status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&report.stdout).unwrap_or_else(|error| {
            panic!(
                "check-disk-space --json printed no JSON ({error}): {}",
                String::from_utf8_lossy(&report.stdout)
            )
        });
    assert!(report["storage"]["available_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["recommendations"].as_array().unwrap().len(), 4);

    let directory = small_image(&repository_root(), "make-image");
    let source = file_and_context(&directory);
    let source: Vec<&str> = source.iter().map(String::as_str).collect();
    assert!(cargo_make("build-image-amd64", &source, &env)
        .status
        .success());
    assert!(cargo_make("push-image-amd64", &[], &env).status.success());
    assert_eq!(
        index_platforms(&registry.index("rc-web", "make-e2e")),
        ["linux/amd64"]
    );
    // Not signed (no key here): `verify` says so, check by check.
    let keys = support::scratch_dir("make-keys");
    let generated = std::process::Command::new("cosign")
        .arg("generate-key-pair")
        .current_dir(&keys)
        .env("COSIGN_PASSWORD", "")
        .output()
        .expect("cosign is installed (run `cargo xtask setup`)");
    assert!(generated.status.success());
    let verified = cargo_make(
        "verify",
        &[
            &format!("{host}/rc-web:make-e2e"),
            "--key",
            keys.join("cosign.pub").to_str().unwrap(),
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&verified.stderr);
    // (cargo-make reports a task's failure as its own exit code 105.)
    assert!(!verified.status.success(), "{stderr}");
    assert!(
        stderr.contains("FAILED signature") && stderr.contains("is NOT verified"),
        "{stderr}"
    );
    // `reproduce` reads the provenance first: an unsigned release has none
    // that the key signed, so it stops there, before any rebuild.
    let reproduced = cargo_make(
        "reproduce",
        &[
            &format!("{host}/rc-web:make-e2e"),
            "--key",
            keys.join("cosign.pub").to_str().unwrap(),
            "--tls-verify",
            "false",
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&reproduced.stderr);
    assert!(!reproduced.status.success(), "{stderr}");
    assert!(
        stderr.contains("provenance") && !stderr.contains("rebuilding commit"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&keys);
    let wrong = cargo_make("push-image-arm64", &[], &env);
    assert!(
        !wrong.status.success(),
        "push-image-arm64 refuses a list that holds only linux/amd64"
    );
    // Its dry run plans from the same lists, so it refuses the same way.
    let planned = cargo_make("push-image-arm64", &["--dry-run"], &env);
    assert!(!planned.status.success());
    assert!(
        String::from_utf8_lossy(&planned.stderr).contains("holds linux/amd64, not linux/arm64"),
        "the dry run says what the real run said"
    );

    // The rest print their exact commands (--dry-run) without running them.
    let expectations: [(&str, &[&str]); 9] = [
        (
            "build-image",
            &["podman build --platform linux/amd64,linux/arm64 "],
        ),
        (
            "build-image-arm64",
            &["podman build --platform linux/arm64 "],
        ),
        (
            "build-image-clean",
            &["podman build --platform linux/amd64,linux/arm64 "],
        ),
        (
            "push-image",
            &["podman manifest push --all --format oci --tls-verify=false"],
        ),
        (
            "build-and-push",
            &[
                "podman build --platform linux/amd64,linux/arm64 ",
                "podman manifest push --all",
            ],
        ),
        (
            "build-and-push-amd64",
            &[
                "podman build --platform linux/amd64 ",
                "podman manifest push --all",
            ],
        ),
        (
            "build-and-push-arm64",
            &[
                "podman build --platform linux/arm64 ",
                "podman manifest push --all",
            ],
        ),
        (
            "build-and-push-clean",
            &[
                "podman build --platform linux/amd64,linux/arm64 ",
                "podman manifest push --all",
            ],
        ),
        ("clean-build-cache", &[]),
    ];
    for (task, expected) in expectations {
        let output = cargo_make(task, &["--dry-run"], &env);
        assert!(
            output.status.success(),
            "cargo make {task} --dry-run failed"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        for fragment in expected {
            assert!(
                stdout.contains(fragment),
                "cargo make {task} --dry-run printed no `{fragment}`:\n{stdout}"
            );
        }
    }
    assert_eq!(
        registry.tags("rc-web"),
        ["make-e2e"],
        "dry runs pushed nothing"
    );
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn a_second_run_on_the_same_image_refuses_while_the_first_builds() {
    let _serial = serial();
    let directory = context_dir(&repository_root(), "slow-build");
    // Unique per run, so the slow step is never a cache hit.
    std::fs::write(
        directory.join("Containerfile"),
        format!(
            "ARG BUILDPLATFORM\nFROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm\n\
             RUN echo {} && sleep 15\n",
            std::process::id()
        ),
    )
    .unwrap();
    let containerfile = directory.join("Containerfile");
    let args = [
        "build-image",
        "--registry",
        "localhost",
        "--image",
        "lock-e2e",
        "--tag",
        "first",
        "--platform",
        "linux/amd64",
        "--file",
        containerfile.to_str().unwrap(),
        "--context",
        directory.to_str().unwrap(),
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_podman-release"))
        .args(args)
        .current_dir(repository_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = locks_directory().join("localhost_lock_e2e.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&lock)
        .is_ok_and(|text| text.contains(&format!("pid {}", first.id())))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let mut second_args = args;
    second_args[6] = "second";
    let second = xtask_in(&repository_root(), &second_args, &[]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another cargo xtask") && stderr.contains("build-image"),
        "{stderr}"
    );
    assert!(!podman_succeeds(&[
        "manifest",
        "exists",
        "localhost/lock-e2e:second"
    ]));

    assert!(
        first.wait().unwrap().success(),
        "the first run is not disturbed"
    );
    assert_eq!(local_platforms("localhost/lock-e2e:first"), ["linux/amd64"]);
    podman(&["manifest", "rm", "localhost/lock-e2e:first"]);
    let _ = std::fs::remove_dir_all(directory);
}
