//! The pipeline against a remote podman, reached only through its socket
//! (`CONTAINER_HOST`), as on macOS (`podman machine`) or with a builder on
//! another machine: a `podman system service` in a mount namespace of its
//! own (`support::RemoteEngine`), whose storage, `/tmp` and `/var/tmp` the
//! xtask cannot see. Root only (the namespace's mounts); the `host` lane.
//!
//! What is tested is the pipeline through the engine, not a compile: the
//! releases build `support::small_image` (one file on the runtime base of
//! each platform; the builders' with one RUN step) while the package, its
//! labels and tags stay `fixtures/hello-service`'s. One test gives its engine
//! every base image with `base-images --export`/`--import` through the
//! socket; the builders get only the bases their image is built on.

mod support;

use support::{
    file_and_context, podman_succeeds, repository_root, scratch_dir, serial, xtask_in, Registry,
    RemoteEngine, ServiceRepository, SshServer,
};

const IMAGE: &str = "acme/hello-service";

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_disk_space_measures_the_remote_engines_storage_not_this_machines() {
    let _serial = serial();
    let engine = RemoteEngine::start("disk", Some("2g"));
    let remote = [("CONTAINER_HOST", engine.url.as_str())];
    // Twice: the second run must not answer from what the first kept.
    for _ in 0..2 {
        let output = xtask_in(&repository_root(), &["check-disk-space", "--json"], &remote);
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let storage = &report["storage"];
        assert_eq!(
            storage["total_bytes"],
            2u64 << 30,
            "the engine's 2 GiB tmpfs: {storage}"
        );
        assert!(storage["available_bytes"].as_u64().unwrap() <= 2u64 << 30);
        assert_eq!(storage["graph_root"], engine.graph_root.to_str().unwrap());
        assert!(
            storage["mount_point"].is_null(),
            "not measured here: {storage}"
        );
        let multi = report["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["build"] == "multi-platform")
            .unwrap();
        assert_eq!(multi["status"], "below-minimum");
        // The engine's records are out of reach: podman 4.4 and later count
        // each layer once in `system df`, 4.3 once per image (no measure).
        let usage = &report["usage"];
        let version = engine.podman(&["version", "--format", "{{.Server.Version}}"]);
        let version = String::from_utf8_lossy(&version.stdout);
        if version.trim().starts_with("4.3.") {
            assert!(usage["on_disk_bytes"].is_null(), "{usage}");
            assert!(
                usage["note"]
                    .as_str()
                    .unwrap()
                    .contains("podman 4.4 or later"),
                "{usage}"
            );
        } else {
            assert_eq!(
                usage["on_disk_bytes"].as_u64(),
                Some(
                    report["podman_usage"]["images_bytes"].as_u64().unwrap()
                        + report["podman_usage"]["containers_bytes"].as_u64().unwrap()
                ),
                "{usage}"
            );
        }
    }
    // The path exists only on the engine's side.
    assert!(!engine.graph_root.exists());
    // This machine's own storage is another figure.
    let local = xtask_in(&repository_root(), &["check-disk-space", "--json"], &[]);
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
    assert_ne!(local["storage"]["total_bytes"], 2u64 << 30);
}

#[test]
fn a_release_is_built_pushed_and_cleaned_through_a_remote_engine() {
    let _serial = serial();
    let engine = RemoteEngine::start("release", None);
    let registry = Registry::start("remote");
    let host = registry.host();
    let service = ServiceRepository::new("remote", "v1.0.0");
    let image = support::small_image(&service.path, "remote-image");
    let image_args = file_and_context(&image);
    let image_args: Vec<&str> = image_args.iter().map(String::as_str).collect();
    let remote = [("CONTAINER_HOST", engine.url.as_str())];

    // The base images reach the engine through its socket (the one test
    // that moves them all with `base-images --import`; the build then finds
    // hello-service's declared bases up to date on the engine).
    give_base_images(&engine);

    // Both platforms, built on the engine and pushed from it.
    let output = xtask_in(
        &service.path,
        &[
            &[
                "build-and-push",
                "--registry",
                &host,
                "--tls-verify",
                "false",
                "--json",
            ][..],
            &image_args,
        ]
        .concat(),
        &remote,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        support::index_platforms(&registry.index(IMAGE, "v1.0.0")),
        ["linux/amd64", "linux/arm64"]
    );
    let list = format!("{host}/{IMAGE}:v1.0.0");
    assert!(
        engine.podman_succeeds(&["manifest", "exists", &list]),
        "the engine has the list"
    );
    assert!(
        !podman_succeeds(&["manifest", "exists", &list]),
        "this machine's storage does not"
    );

    // The arm64 image, pulled by the engine by its digest, runs there as
    // aarch64: its dynamic loader (the runtime base's; the image has no
    // shell) names the platform the kernel (qemu) reports.
    let digest = report["platforms"]["linux/arm64"].as_str().unwrap();
    let pulled = format!("{host}/{IMAGE}@{digest}");
    let ran = engine.podman(&[
        "run",
        "--rm",
        "--tls-verify=false",
        &pulled,
        "/lib/ld-linux-aarch64.so.1",
        "--help",
    ]);
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && said.contains("aarch64 (AT_PLATFORM; supported, searched)"),
        "{said}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let architecture =
        engine.podman(&["image", "inspect", "--format", "{{.Architecture}}", &pulled]);
    assert_eq!(
        String::from_utf8_lossy(&architecture.stdout).trim(),
        "arm64"
    );

    // push-by-digest through the engine: pushed under the platform's tag
    // (a remote podman cannot push without one), its digest read back.
    let digest_directory = scratch_dir("remote-digest");
    let digest_file = digest_directory.join("linux-arm64");
    let pushed = xtask_in(
        &service.path,
        &[
            &[
                "push-by-digest",
                "--platform",
                "linux/arm64",
                "--digest-file",
                digest_file.to_str().unwrap(),
                "--registry",
                &host,
                "--tls-verify",
                "false",
            ][..],
            &image_args,
        ]
        .concat(),
        &remote,
    );
    assert_eq!(pushed.status.code(), Some(0), "{}", stderr_of(&pushed));
    let written = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(
        written.trim(),
        digest,
        "the same image as build-and-push's arm64 entry"
    );
    assert!(registry
        .tags(IMAGE)
        .contains(&"v1.0.0-linux-arm64".to_owned()));
    let _ = std::fs::remove_dir_all(&digest_directory);

    // The build cache is the engine's to clean; the lists stay.
    let cleaned = xtask_in(&service.path, &["clean-build-cache"], &remote);
    assert_eq!(cleaned.status.code(), Some(0), "{}", stderr_of(&cleaned));
    assert!(stderr_of(&cleaned).contains("clean: removed"));
    assert!(engine.podman_succeeds(&["manifest", "exists", &list]));
    let _ = std::fs::remove_dir_all(&image);
}

/// Every base image into `engine`, from an archive of this machine's
/// (`base-images --export`, then `--import` through the engine's socket:
/// README's "also through a remote podman"). 1.5 GB: the other tests give
/// their engines only what their image is built on ([`support::give_small_bases`]).
fn give_base_images(engine: &RemoteEngine) {
    let directory = scratch_dir("remote-base-images");
    let archive = directory.join("base.tar");
    let archive = archive.to_str().unwrap();
    let exported = xtask_in(
        &repository_root(),
        &["base-images", "--export", archive],
        &[],
    );
    assert_eq!(exported.status.code(), Some(0), "{}", stderr_of(&exported));
    let remote = [("CONTAINER_HOST", engine.url.as_str())];
    let imported = xtask_in(
        &repository_root(),
        &["base-images", "--import", archive],
        &remote,
    );
    assert_eq!(imported.status.code(), Some(0), "{}", stderr_of(&imported));
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn two_builders_one_over_ssh_release_one_list_and_a_builder_lost_mid_release_is_a_failed_platform()
{
    let _serial = serial();
    let amd64 = RemoteEngine::start("builder-amd64", None);
    let mut arm64 = RemoteEngine::start("builder-arm64", None);
    support::give_small_bases(
        &[&amd64, &arm64],
        &[
            "localhost/rc-base/runtime:bookworm",
            "localhost/rc-base/debian:bookworm",
        ],
    );
    let service = ServiceRepository::new("builders", "v2.0.0");
    let image = image_with_a_long_arm64_step(&service.path, "builders-image");
    std::fs::write(image.join("seconds"), "0").unwrap();
    let image_args = file_and_context(&image);
    // The arm64 builder is reached over ssh, as a machine of its own would be.
    let ssh = SshServer::start("builders");
    let arm64_url = ssh.url(&arm64.socket());
    let registry = Registry::start("builders");
    let host = registry.host();
    let builders = [
        format!("linux/amd64={}", amd64.url),
        format!("linux/arm64={arm64_url}"),
    ];
    let mut env = ssh.client_env();
    env.push(("BUILDER_TIMEOUT".to_owned(), "10".to_owned()));
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // The declared bases (BUILDER_IMAGE: the 1.5 GB Rust builder) replaced
    // by the ones this image is built on, which the builders have.
    let arguments = [
        &[
            "build-and-push",
            "--builder",
            &builders[0],
            "--builder",
            &builders[1],
            "--registry",
            &host,
            "--tls-verify",
            "false",
            "--json",
            "--build-arg",
            "BUILDER_IMAGE=localhost/rc-base/debian:bookworm",
            "--build-arg",
            "RUNTIME_IMAGE=localhost/rc-base/runtime:bookworm",
        ][..],
        &image_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat();

    // Each platform on its builder, one list with every tag.
    let output = xtask_in(&service.path, &arguments, &env);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for tag in ["v2.0.0", "latest"] {
        assert_eq!(
            support::index_platforms(&registry.index(IMAGE, tag)),
            ["linux/amd64", "linux/arm64"],
            "{tag}"
        );
    }
    // skopeo, an independent client, reads the same list back.
    let inspected = support::run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/{IMAGE}:v2.0.0"),
        ],
    );
    assert_eq!(
        support::index_platforms(&inspected),
        ["linux/amd64", "linux/arm64"]
    );
    eprintln!(
        "skopeo inspect --raw docker://{host}/{IMAGE}:v2.0.0: {:?}",
        support::index_platforms(&inspected)
    );
    assert_eq!(
        report["platforms"].as_object().unwrap().len(),
        2,
        "{report}"
    );
    // Each platform was built on its own builder, and only there.
    let list = format!("{host}/{IMAGE}:v2.0.0");
    for (engine, platform) in [(&amd64, "linux/amd64"), (&arm64, "linux/arm64")] {
        let inspected = engine.podman(&["manifest", "inspect", &list]);
        assert_eq!(
            support::index_platforms(&String::from_utf8_lossy(&inspected.stdout)),
            [platform],
            "the builder's own list"
        );
    }
    assert!(
        stderr.contains("[linux/arm64] "),
        "each builder's output is marked: {stderr}"
    );
    assert!(
        ssh.log().contains("Accepted publickey for root"),
        "the arm64 builder was reached over ssh: {}",
        ssh.log()
    );
    let released = registry.index(IMAGE, "latest");

    // The arm64 builder goes silent while it builds the next release: the
    // release goes on without it, and says so; `latest` is held back.
    service.release_again("v2.1.0");
    std::fs::write(image.join("seconds"), "30").unwrap();
    let log = scratch_dir("builders-log").join("stderr");
    let mut child = xtask_child(&service.path, &arguments, &env, &log);
    let started = std::time::Instant::now();
    support::wait_until(
        "the arm64 builder runs its RUN step",
        std::time::Duration::from_secs(300),
        || {
            std::fs::read_to_string(&log).is_ok_and(|text| {
                text.lines()
                    .any(|line| line.starts_with("[linux/arm64] ") && line.contains("RUN "))
            })
        },
    );
    arm64.freeze();
    let status = support::wait_for_exit(&mut child, std::time::Duration::from_secs(300));
    let stderr = std::fs::read_to_string(&log).unwrap();
    eprintln!("--- the release with a silent builder:\n{stderr}");
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "linux/arm64: builder {arm64_url} has not answered for"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("FAILED: linux/arm64 on builder {arm64_url}")),
        "{stderr}"
    );
    eprintln!(
        "the release with a silent builder ended in {} s",
        started.elapsed().as_secs()
    );
    assert_eq!(
        support::index_platforms(&registry.index(IMAGE, "v2.1.0")),
        ["linux/amd64"]
    );
    assert_eq!(
        registry.index(IMAGE, "latest"),
        released,
        "latest still names the complete release"
    );
    // Nothing of the lost builder's is left waiting on it here.
    let waiting = support::processes_with(&format!("{host}/{IMAGE}"));
    assert!(waiting.is_empty(), "left behind: {waiting:?}");
    arm64.thaw();
    let _ = std::fs::remove_dir_all(log.parent().unwrap());

    // The arm64 builder is down before the release: refused at once.
    arm64.stop();
    let output = xtask_in(&service.path, &arguments, &env);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("FAILED: linux/arm64 on builder {arm64_url}")),
        "{stderr}"
    );
    assert_eq!(registry.index(IMAGE, "latest"), released);
    let _ = std::fs::remove_dir_all(&image);
}

/// [`support::small_image`] with one RUN step (in Debian, on the build
/// platform) that, for linux/arm64 only, lasts as many seconds as the
/// context's file `seconds` says: none in a release that goes through, a
/// while in the one whose arm64 builder goes silent in it (the amd64
/// builder does not wait as long).
fn image_with_a_long_arm64_step(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let image = support::small_image(root, name);
    std::fs::write(
        image.join("Containerfile"),
        "ARG BUILDPLATFORM\n\
         ARG TARGETPLATFORM\n\
         FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS build\n\
         ARG TARGETARCH\n\
         COPY . /out/\n\
         RUN if [ \"$TARGETARCH\" = arm64 ]; then sleep \"$(cat /out/seconds)\"; fi\n\
         FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
         COPY --from=build /out /out\n",
    )
    .unwrap();
    image
}

/// The xtask in the background, its stderr (and stdout) going to `log`.
fn xtask_child(
    directory: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_podman-release"));
    command
        .current_dir(directory)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("REGISTRY")
        .env_remove("BUILDERS")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command.spawn().expect("run xtask")
}
