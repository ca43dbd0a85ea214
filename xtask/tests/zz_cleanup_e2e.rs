//! clean-build-cache against real leftovers. Named to run after the other
//! end-to-end binaries (cargo runs them in name order): it empties the build
//! cache, which would make their builds cold.

mod support;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::*;

fn external_containers() -> Vec<String> {
    podman(&[
        "ps",
        "--all",
        "--external",
        "--format",
        "{{.ID}} {{.State}}",
    ])
    .lines()
    .filter(|line| line.to_ascii_lowercase().ends_with(" storage"))
    .map(|line| line.split(' ').next().unwrap().to_owned())
    .collect()
}

/// Starts a build whose RUN step sleeps, and kills podman in the middle of it,
/// leaving buildah's working container behind, as a crash or kill -9 would.
fn leave_a_build_container_behind() -> String {
    let directory = scratch_dir("interrupted-build");
    // A sleep no other test's (or lane's) build runs: `sleep 120.PID`.
    let sleep = format!("sleep 120.{}", std::process::id());
    std::fs::write(
        directory.join("Containerfile"),
        format!("FROM localhost/rc-base/debian:bookworm\nRUN {sleep}\n"),
    )
    .unwrap();
    let before = external_containers();
    let mut build = Command::new("podman")
        .args(["build", "--tag", "localhost/clean-e2e:interrupted"])
        .arg(&directory)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let leftover = loop {
        if let Some(new) = external_containers()
            .into_iter()
            .find(|id| !before.contains(id))
        {
            break new;
        }
        assert!(
            Instant::now() < deadline,
            "the build never started its RUN step"
        );
        thread::sleep(Duration::from_millis(200));
    };
    build.kill().unwrap();
    build.wait().unwrap();
    // This one only: another lane may be sleeping in its own build.
    let _ = Command::new("pkill")
        .args(["-f", &format!("^{sleep}$")])
        .status();
    let _ = std::fs::remove_dir_all(directory);
    leftover
}

/// `check-disk-space --json`'s figure of what `clean-build-cache` frees
/// (from the storage's records, each layer once).
fn clean_frees_bytes() -> u64 {
    let output = xtask_in(&repository_root(), &["check-disk-space", "--json"], &[]);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["usage"]["images_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
    report["usage"]["clean_frees_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage.clean_frees_bytes: {report}"))
}

/// A list whose only image has been deleted.
fn make_a_broken_list() {
    // One left by an earlier run that failed before its clean.
    let _ = Command::new("podman")
        .args(["manifest", "rm", "localhost/clean-e2e:broken"])
        .output();
    let directory = scratch_dir("broken-list");
    let tarball = directory.join("empty.tar");
    run(
        "tar",
        &["-cf", tarball.to_str().unwrap(), "-T", "/dev/null"],
    );
    podman(&[
        "import",
        "--quiet",
        tarball.to_str().unwrap(),
        "localhost/clean-e2e:doomed",
    ]);
    podman(&["manifest", "create", "localhost/clean-e2e:broken"]);
    podman(&[
        "manifest",
        "add",
        "localhost/clean-e2e:broken",
        "containers-storage:localhost/clean-e2e:doomed",
    ]);
    podman(&["rmi", "localhost/clean-e2e:doomed"]);
    let _ = std::fs::remove_dir_all(directory);
}

#[test]
fn clean_build_cache_removes_leftovers_and_keeps_what_lists_refer_to() {
    let _serial = serial();
    // A good list that must survive, built from the cache (cheap).
    let output = xtask_in(
        &repository_root(),
        &[
            "build-image",
            "--registry",
            "localhost",
            "--image",
            "clean-e2e",
            "--tag",
            "kept",
            "--platform",
            "linux/amd64",
        ],
        &[],
    );
    assert!(output.status.success());
    let kept_digests = local_digests("localhost/clean-e2e:kept");

    let leftover = leave_a_build_container_behind();
    make_a_broken_list();
    // A temporary list of a build-image run that no longer exists.
    podman(&[
        "tag",
        "localhost/clean-e2e:kept",
        "localhost/clean-e2e:build-4194304",
    ]);

    // What a clean would free: the build cache (rc-web's dependency and
    // library stages, which no list refers to), not the lists' images.
    let frees_before = clean_frees_bytes();
    assert!(frees_before > 0, "the builds left a cache to free");

    let output = xtask_in(&repository_root(), &["clean-build-cache"], &[]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("clean: reclaimed"), "{stderr}");
    assert_eq!(
        clean_frees_bytes(),
        0,
        "after a clean, check-disk-space finds nothing more a clean would free"
    );

    assert!(
        !external_containers().contains(&leftover),
        "the leftover build container is removed"
    );
    assert!(
        !podman_succeeds(&["manifest", "exists", "localhost/clean-e2e:broken"]),
        "the broken list is removed"
    );
    assert!(
        !podman_succeeds(&["manifest", "exists", "localhost/clean-e2e:build-4194304"]),
        "the stale temporary list is removed"
    );
    assert_eq!(local_digests("localhost/clean-e2e:kept"), kept_digests);
    for digest in &kept_digests {
        assert!(
            image_with_digest(digest).is_some(),
            "the images a list refers to are kept ({digest})"
        );
    }
    assert!(
        podman_succeeds(&[
            "image",
            "exists",
            "localhost/rc-base/runtime:bookworm-arm64"
        ]),
        "named images are kept"
    );
    podman(&["manifest", "rm", "localhost/clean-e2e:kept"]);
}
