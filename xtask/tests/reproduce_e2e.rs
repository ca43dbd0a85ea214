//! `reproduce`, end to end: a signed release of the test crate (a small
//! image committed in its repository: the runtime base and one file, both
//! platforms) is rebuilt from its commit in a private storage and found
//! identical, for the list and each platform, also once the local images
//! are gone; the user's storage holds the same images before and after. A
//! release replaced in the registry by a rebuild with one changed file
//! (same tag, signed again) is reported as different, naming that file and
//! its layer.

mod support;

use std::path::{Path, PathBuf};

use support::{podman, serial, xtask_in, FreshStorage, Registry, ServiceRepository};

const IMAGE: &str = "acme/hello-service";
const PASSWORD: &str = "reproduce-e2e";

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `cosign generate-key-pair` in `directory`, with this test's password.
fn key_pair(directory: &Path) -> (PathBuf, PathBuf) {
    support::key_pair(directory, PASSWORD)
}

/// The test crate's repository with a small image committed in it: the
/// runtime base and `image/hello.txt` (`greeting`).
fn service_with_a_small_image(name: &str, greeting: &str) -> ServiceRepository {
    ServiceRepository::with_files(
        name,
        "v0.5.0",
        &[
            (
                "image/Containerfile",
                "ARG TARGETPLATFORM\n\
                 FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
                 COPY hello.txt /srv/hello.txt\n",
            ),
            ("image/hello.txt", greeting),
            // Another image on the same base (its layers are not the
            // release's).
            (
                "other/Containerfile",
                "ARG TARGETPLATFORM\n\
                 FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
                 LABEL purpose=another-image-on-the-runtime-base\n",
            ),
        ],
    )
}

/// Every image ID in this user's storage.
fn image_ids() -> std::collections::BTreeSet<String> {
    podman(&["images", "--all", "--quiet", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `build-and-push` of the small image as a signed release `v0.5.0`.
fn release_arguments<'a>(host: &'a str, key: &'a Path) -> Vec<&'a str> {
    vec![
        "build-and-push",
        "--registry",
        host,
        "--tls-verify",
        "false",
        "--tag",
        "v0.5.0",
        "--no-latest",
        "--signing-key",
        key.to_str().unwrap(),
    ]
    .into_iter()
    .chain(SOURCE)
    .collect()
}

/// The small image's Containerfile and context. The image is on the
/// runtime base alone (as its rebuild will be: the build arguments are
/// part of what is recorded).
const SOURCE: [&str; 6] = [
    "--file",
    "image/Containerfile",
    "--context",
    "image",
    "--build-arg",
    "BUILDER_IMAGE=localhost/rc-base/runtime:bookworm",
];

/// The release, with `more` arguments, in the storage `env` names (this
/// user's without).
fn release(
    service: &Path,
    host: &str,
    key: &Path,
    more: &[&str],
    env: &[(&'static str, String)],
) -> std::process::Output {
    let arguments = [&release_arguments(host, key)[..], more].concat();
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    env.push(("COSIGN_PASSWORD", PASSWORD));
    xtask_in(service, &arguments, &env)
}

fn reproduce(
    service: &Path,
    host: &str,
    public: &Path,
) -> (std::process::Output, serde_json::Value) {
    let output = xtask_in(
        service,
        &[
            "reproduce",
            &format!("{host}/{IMAGE}:v0.5.0"),
            "--key",
            public.to_str().unwrap(),
            "--tls-verify",
            "false",
            "--json",
        ],
        &[],
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", stderr_of(&output)));
    (output, report)
}

/// Takes the runtime base's names (and list) from this storage; the
/// images stay for what else uses them.
fn untag_runtime_base() {
    let _ = std::process::Command::new("podman")
        .args(["manifest", "rm", "localhost/rc-base/runtime:bookworm"])
        .output();
    for arch in ["amd64", "arm64"] {
        let _ = std::process::Command::new("podman")
            .args([
                "untag",
                &format!("localhost/rc-base/runtime:bookworm-{arch}"),
            ])
            .output();
    }
}

/// The store references the rebuild took base images from.
fn bases_from_the_store(report: &serde_json::Value) -> Vec<String> {
    report["bases_taken"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|taken| Some(taken["store"].as_str()?.to_owned()))
        .collect()
}

fn remove_local(host: &str) {
    let _ = std::process::Command::new("podman")
        .args(["manifest", "rm", &format!("{host}/{IMAGE}:v0.5.0")])
        .output();
}

#[test]
fn a_release_is_rebuilt_from_its_commit_bit_for_bit_and_a_replaced_file_is_named() {
    let _serial = serial();
    let registry = Registry::start("reproduce");
    let host = registry.host();
    let service = service_with_a_small_image("reproduce", "hello, reproducibly\n");
    let keys = support::scratch_dir("reproduce-keys");
    let (key, public) = key_pair(&keys);
    // The runtime base as this podman makes it from its definition, as on a
    // machine of its own (the podman 5 lane's storage holds the host's,
    // made by podman 4.3, whose dated copy differs: the report would say
    // so first). The images themselves stay for what else uses them.
    untag_runtime_base();
    // A build with the registry cache makes the base images and puts them
    // into the store (the cache's repository, under their definitions). Of
    // another image: a layer of the release's own that this storage had
    // cached from an earlier run would reach the fresh runner through the
    // cache with that run's date.
    let store = format!("{host}/acme/layers");
    let other = service.path.join("other");
    let containerfile = other.join("Containerfile");
    let built = xtask_in(
        &service.path,
        &[
            "build-image",
            "--registry",
            &host,
            "--image",
            "acme/other",
            "--tag",
            "v1",
            "--cache-repo",
            &store,
            "--cache-tls-verify",
            "false",
            "--file",
            containerfile.to_str().unwrap(),
            "--context",
            other.to_str().unwrap(),
            "--build-arg",
            "BUILDER_IMAGE=localhost/rc-base/runtime:bookworm",
        ],
        &[],
    );
    assert_eq!(built.status.code(), Some(0), "{}", stderr_of(&built));
    // The release, on a machine without them (a fresh storage, as a CI
    // runner's), takes them from the store; it names the store, so its
    // provenance says where they are.
    let runner = FreshStorage::new("reproduce-runner");
    let with_store = ["--cache-repo", store.as_str()];
    let started = std::time::Instant::now();
    let released = release(&service.path, &host, &key, &with_store, &runner.env());
    let release_seconds = started.elapsed().as_secs_f64();
    assert_eq!(released.status.code(), Some(0), "{}", stderr_of(&released));

    // Rebuilt in a private storage: the same list, the same images.
    let before = image_ids();
    let started = std::time::Instant::now();
    let (output, report) = reproduce(&service.path, &host, &public);
    eprintln!(
        "reproduce_e2e: the release took {release_seconds:.1} s, reproduce {:.1} s (its \
         rebuild {:.1} s)",
        started.elapsed().as_secs_f64(),
        report["rebuild_seconds"].as_f64().unwrap_or_default()
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(report["identical"], true, "{report:#}");
    let subjects: Vec<&str> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|verdict| verdict["identical"] == true)
        .map(|verdict| verdict["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["linux/amd64", "linux/arm64", "list"],
        "{report:#}"
    );
    assert!(
        report["recorded"]["source"]
            .as_str()
            .unwrap()
            .starts_with("provenance (signature checked)"),
        "{report:#}"
    );
    // The base images came from the store, the very ones (image ID and
    // manifest), and were not made again.
    let kept_runtime = bases_from_the_store(&report);
    assert_eq!(kept_runtime.len(), 2, "both architectures': {report:#}");
    assert!(!stderr.contains("base-images: building"), "{stderr}");
    let after = image_ids();
    assert!(
        after == before,
        "the user's storage is as it was: added {:?}, removed {:?}",
        after.difference(&before).collect::<Vec<_>>(),
        before.difference(&after).collect::<Vec<_>>()
    );

    // build-and-push --reproduce: the release, then its rebuild, in one
    // run. Here, on the base images this machine made (their manifests are
    // not the store's: the rebuild makes them too, and says why).
    let again = release(
        &service.path,
        &host,
        &key,
        &[&with_store[..], &["--no-cache", "--reproduce"]].concat(),
        &[],
    );
    let stderr = stderr_of(&again);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("identical  list")
            && stderr.contains("(made on the machine that built it)"),
        "the run reproduced what it pushed: {stderr}"
    );

    // The same once nothing of the release is left locally.
    remove_local(&host);
    let (output, report) = reproduce(&service.path, &host, &public);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(report["identical"], true, "{report:#}");

    // The tag replaced by a build with one file changed, signed again (a
    // work tree with an uncommitted change: its provenance names the
    // commit), on the fresh runner. And the store's arm64 runtime base
    // replaced by another image: the rebuild makes that one from its
    // definition, and says so.
    std::fs::write(service.path.join("image/hello.txt"), "hello, tampered\n").unwrap();
    let replaced = release(&service.path, &host, &key, &with_store, &runner.env());
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr_of(&replaced));
    let arm64 = kept_runtime
        .iter()
        .find(|kept| kept.contains("-arm64-"))
        .unwrap();
    podman(&[
        "push",
        "--tls-verify=false",
        "localhost/rc-base/runtime:bookworm-amd64",
        &format!("docker://{arm64}"),
    ]);
    let (output, report) = reproduce(&service.path, &host, &public);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(report["identical"], false, "{report:#}");
    let amd64 = &report["verdicts"][0];
    assert_eq!(amd64["subject"], "linux/amd64");
    let layers = amd64["difference"]["layers"].as_array().unwrap();
    let named: Vec<(u64, &str, &str)> = layers
        .iter()
        .flat_map(|layer| {
            layer["files"].as_array().unwrap().iter().map(move |file| {
                (
                    layer["index"].as_u64().unwrap(),
                    file["path"].as_str().unwrap(),
                    file["change"].as_str().unwrap(),
                )
            })
        })
        .collect();
    assert!(
        named.iter().any(|(index, path, change)| *index == 1
            && *path == "srv/hello.txt"
            && change.contains("content")),
        "the changed file and its layer (above the base's): {named:?}"
    );
    assert!(stderr.contains("srv/hello.txt content"), "{stderr}");
    // The base taken from the store where it is still the release's, made
    // here where not: the arm64 image then names another base manifest
    // (the same image, made here rather than pulled), and the report says
    // which base was made and why.
    assert_eq!(
        bases_from_the_store(&report),
        kept_runtime
            .iter()
            .filter(|kept| kept.contains("-amd64-"))
            .cloned()
            .collect::<Vec<_>>(),
        "{report:#}"
    );
    assert!(
        stderr.contains(&format!("{arm64} is now image"))
            && stderr.contains("base-images: building localhost/rc-base/runtime:bookworm-arm64"),
        "{stderr}"
    );
    assert!(
        report["verdicts"][1]["difference"]["config"]
            .as_array()
            .unwrap()
            .iter()
            .any(|field| field["field"]
                .as_str()
                .unwrap()
                .ends_with("org.opencontainers.image.base.digest")),
        "{report:#}"
    );

    remove_local(&host);
    let _ = std::process::Command::new("podman")
        .args(["manifest", "rm", &format!("{host}/acme/other:v1")])
        .output();
    let _ = std::fs::remove_dir_all(keys);
}

/// Debian 13's podman 5.4 (the `podman5` lane's image) in a privileged
/// container on the host network, with `mounts` at their own paths and the
/// Rust toolchain: a machine with another podman. Removed on drop.
struct Podman5 {
    name: String,
    storage: PathBuf,
    path: String,
}

impl Podman5 {
    const IMAGE: &'static str = "localhost/rc-lane/podman5:trixie-amd64";

    fn start(mounts: &[&Path]) -> Podman5 {
        let name = format!("rc-e2e-podman5-{}", std::process::id());
        let storage = support::scratch_dir("reproduce-podman5-storage");
        let sysroot = support::run("rustc", &["--print", "sysroot"])
            .trim()
            .to_owned();
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--rm",
            "--name",
            &name,
            "--privileged",
            "--network",
            "host",
        ]
        .map(String::from)
        .to_vec();
        args.push("--volume".into());
        args.push(format!("{}:/var/lib/containers", storage.display()));
        let mut paths: Vec<String> = mounts
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        paths.push(sysroot.clone());
        for path in paths {
            args.push("--volume".into());
            args.push(format!("{path}:{path}"));
        }
        // This machine's cosign (Debian 13's package, linked to libc
        // alone): the release is signed there as here.
        let cosign = support::run("which", &["cosign"]).trim().to_owned();
        args.push("--volume".into());
        args.push(format!("{cosign}:/usr/local/bin/cosign:ro"));
        args.push(Podman5::IMAGE.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman(&args);
        // qemu's registration is the kernel's: visible once mounted.
        podman(&[
            "exec",
            &name,
            "mount",
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]);
        Podman5 {
            name,
            storage,
            path: format!(
                "{sysroot}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ),
        }
    }

    /// `program args` inside, in `directory`, with `env`.
    fn exec(
        &self,
        directory: &Path,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let mut command = std::process::Command::new("podman");
        command
            .args(["exec", "--workdir"])
            .arg(directory)
            .args([
                "--env",
                &format!("PATH={}", self.path),
                "--env",
                "HOME=/root",
            ])
            .args(["--env", "CARGO_HOME=/tmp/cargo-home"]);
        for (name, value) in env {
            command.args(["--env", &format!("{name}={value}")]);
        }
        command
            .arg(&self.name)
            .arg(program)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Podman5 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(&self.storage)
            .status();
    }
}

#[test]
fn a_release_built_by_another_podman_names_the_versions_first() {
    let _serial = serial();
    let registry = Registry::start("reproduce-versions");
    let host = registry.host();
    let service = service_with_a_small_image("reproduce-versions", "hello from podman 5\n");
    let keys = support::scratch_dir("reproduce-versions-keys");
    let (key, public) = key_pair(&keys);
    let xtask = std::fs::canonicalize(env!("CARGO_BIN_EXE_podman-release")).unwrap();
    let bases = support::scratch_dir("reproduce-versions-bases");
    let archive = bases.join("runtime.tar");
    let images = [
        "localhost/rc-base/runtime:bookworm-amd64",
        "localhost/rc-base/runtime:bookworm-arm64",
    ];
    podman(
        &[
            &[
                "save",
                "--multi-image-archive",
                "--output",
                archive.to_str().unwrap(),
            ][..],
            &images,
        ]
        .concat(),
    );
    // This xtask's own files (its base images' recipes) are mounted too, as
    // in the podman5 lane.
    let root = support::repository_root();
    let podman5 = Podman5::start(&[&root, &service.path, &keys, xtask.parent().unwrap(), &bases]);
    // The runtime base, the same images as here, under the names the
    // Containerfile uses.
    let inside = |args: &[&str]| {
        let output = podman5.exec(&service.path, "podman", args, &[]);
        assert!(
            output.status.success(),
            "podman {args:?}: {}",
            stderr_of(&output)
        );
    };
    inside(&["load", "--input", archive.to_str().unwrap()]);
    inside(&["manifest", "create", "localhost/rc-base/runtime:bookworm"]);
    for image in images {
        inside(&[
            "manifest",
            "add",
            "localhost/rc-base/runtime:bookworm",
            &format!("containers-storage:{image}"),
        ]);
    }
    let released = podman5.exec(
        &service.path,
        xtask.to_str().unwrap(),
        &[&release_arguments(&host, &key)[..], &["--no-setup"]].concat(),
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert_eq!(released.status.code(), Some(0), "{}", stderr_of(&released));
    drop(podman5);

    // Rebuilt here, by podman 4.3: different, and the report says first
    // that two podman versions built them, then the buildah label.
    let (output, report) = reproduce(&service.path, &host, &public);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        report["recorded_podman"]
            .as_str()
            .unwrap()
            .starts_with("5."),
        "{report:#}"
    );
    let summary = stderr
        .split(&format!("\nreproduce: {host}/{IMAGE}:v0.5.0\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert!(
        summary.starts_with("  VERSIONS:  built with podman 5."),
        "the versions come first: {summary}"
    );
    let first = &report["verdicts"][0]["difference"]["config"];
    let fields: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    let buildah = fields
        .iter()
        .position(|field| *field == "Labels.io.buildah.version")
        .unwrap_or_else(|| panic!("the buildah label differs: {fields:?}"));
    assert!(
        fields[..buildah]
            .iter()
            .all(|field| field.starts_with("manifest.")),
        "the buildah label first among the config's fields: {fields:?}"
    );
    let _ = std::fs::remove_dir_all(keys);
    let _ = std::fs::remove_dir_all(bases);
}
