//! A release declared in Cargo metadata, end to end: a second, ordinary
//! crate (`tests/fixtures/hello-service`: its own workspace, a plain
//! multi-stage Containerfile, no xtask of its own) is released by the same
//! commands as rc-web, to two registries at once, labelled with its own
//! name, version and licence; a dry run prints exactly what the real run
//! then runs (build, push, merge); and a registry that fails is named while
//! the other keeps the release.
//!
//! Only the first test compiles hello-service: it is the subject (a crate
//! released by its metadata alone). The others are about the pipeline's
//! commands and refusals and build `support::small_image` (`--file`,
//! `--context`), still as hello-service's release (its metadata, its tags).

mod support;

use support::{
    file_and_context, podman, run, scratch_dir, serial, xtask_in, Registry, ServiceRepository,
};

const IMAGE: &str = "acme/hello-service";

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Removes the local lists and images a test made under `host`'s names.
fn remove_local(host: &str) {
    let names = run(
        "podman",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    );
    for name in names
        .lines()
        .filter(|name| name.starts_with(&format!("{host}/{IMAGE}")))
    {
        let _ = std::process::Command::new("podman")
            .args(["manifest", "rm", name])
            .output();
        let _ = std::process::Command::new("podman")
            .args(["rmi", name])
            .output();
    }
}

/// `skopeo inspect` of one platform's image: its labels and architecture.
fn inspect(reference: &str, arch: &str) -> serde_json::Value {
    serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--no-tags",
            "--no-creds",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &format!("docker://{reference}"),
        ],
    ))
    .unwrap()
}

#[test]
fn an_ordinary_crate_is_released_to_two_registries_with_only_its_metadata() {
    let _serial = serial();
    let (first, second) = (Registry::start("declared-a"), Registry::start("declared-b"));
    let service = ServiceRepository::new("release", "v0.3.0");
    let registries = format!("{},{}", first.host(), second.host());
    let output = xtask_in(
        &service.path,
        &[
            "build-and-push",
            "--registry",
            &registries,
            "--tls-verify",
            "false",
            "--json",
        ],
        &[],
    );
    remove_local(&first.host());
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["image"], format!("{}/{IMAGE}", first.host()));
    assert_eq!(
        report["images"],
        serde_json::json!([
            format!("{}/{IMAGE}", first.host()),
            format!("{}/{IMAGE}", second.host())
        ])
    );

    // Both registries hold every tag, each as a list of both platforms.
    let commit = run(
        "git",
        &[
            "-C",
            service.path.to_str().unwrap(),
            "rev-parse",
            "--short=7",
            "HEAD",
        ],
    );
    for registry in [&first, &second] {
        let tags = registry.tags(IMAGE);
        for tag in ["v0.3.0", commit.trim(), "latest"] {
            assert!(tags.iter().any(|have| have == tag), "{tag} in {tags:?}");
        }
        let index = registry.index(IMAGE, "v0.3.0");
        assert_eq!(
            support::index_platforms(&index),
            ["linux/amd64", "linux/arm64"],
            "{index}"
        );
    }

    // Labelled as itself, from its own Cargo.toml and commit; not as rc-web.
    let reference = format!("{}/{IMAGE}:v0.3.0", second.host());
    let arm64 = inspect(&reference, "arm64");
    assert_eq!(arm64["Architecture"], "arm64");
    let labels = &arm64["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "hello-service");
    assert_eq!(labels["org.opencontainers.image.licenses"], "MIT");
    assert_eq!(labels["org.opencontainers.image.version"], "v0.3.0");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://example.com/acme/hello-service"
    );
    let revision = run(
        "git",
        &["-C", service.path.to_str().unwrap(), "rev-parse", "HEAD"],
    );
    assert_eq!(labels["org.opencontainers.image.revision"], revision.trim());

    // The arm64 image, pulled from the second registry, runs as aarch64.
    let ran = std::process::Command::new("podman")
        .args([
            "run",
            "--rm",
            "--tls-verify=false",
            "--platform",
            "linux/arm64",
            &reference,
        ])
        .output()
        .unwrap();
    let _ = std::process::Command::new("podman")
        .args(["rmi", &reference])
        .output();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        "hello-service 0.3.0 on aarch64",
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The side-effect commands of a run: a dry run's stdout, or the `$ `
/// lines a real run echoes; with what differs between two runs of one plan
/// (process IDs in temporary names, image IDs a dry run cannot know, the
/// temporary directory) made the same, and sorted (pushes to several tags
/// run side by side). A push the real run retried (a registry may answer
/// 500 while other tags of the list are written) counts once: the
/// `PREFIX push: attempt N of M failed; retrying` notice takes back the
/// last command echoed with the same prefix.
fn commands(output: &std::process::Output, dry_run: bool) -> Vec<String> {
    let text = if dry_run {
        String::from_utf8_lossy(&output.stdout).into_owned()
    } else {
        stderr_of(output)
    };
    if dry_run {
        let mut lines: Vec<String> = text.lines().map(normalize).collect();
        lines.sort();
        return lines;
    }
    // (prefix, command) in the order echoed.
    let mut echoed: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let (prefix, rest) = match line.strip_prefix('[') {
            Some(rest) => match rest.split_once("] ") {
                Some((prefix, rest)) => (prefix.to_owned(), rest),
                None => continue,
            },
            None => (String::new(), line),
        };
        if let Some(command) = rest.strip_prefix("$ ") {
            echoed.push((prefix, normalize(command)));
        } else if rest.starts_with("push: attempt ") && rest.contains("failed; retrying") {
            let retried = echoed
                .iter()
                .rposition(|(echoed_prefix, _)| *echoed_prefix == prefix)
                .unwrap_or_else(|| panic!("a retry of no command: {line}"));
            echoed.remove(retried);
        }
    }
    let mut lines: Vec<String> = echoed.into_iter().map(|(_, command)| command).collect();
    lines.sort();
    lines
}

#[test]
fn a_retried_push_counts_once_in_the_real_runs_commands() {
    let stderr = "$ podman manifest push A docker://r/n:v1\n\
                  [latest] $ podman manifest push A docker://r/n:latest\n\
                  [abc1234] $ podman manifest push A docker://r/n:abc1234\n\
                  [abc1234] Error: unexpected HTTP status: 500\n\
                  [abc1234] push: attempt 1 of 3 failed; retrying in 1 s\n\
                  [abc1234] $ podman manifest push A docker://r/n:abc1234\n";
    let output = std::process::Output {
        status: std::process::ExitStatus::default(),
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
    };
    assert_eq!(
        commands(&output, false),
        [
            "podman manifest push A docker://r/n:abc1234",
            "podman manifest push A docker://r/n:latest",
            "podman manifest push A docker://r/n:v1",
        ]
    );
}

fn normalize(line: &str) -> String {
    // A dry run names the image ID it cannot know by what it is.
    let line = line.replace("'<image ID of the built list>'", "IMAGE");
    let mut words = Vec::new();
    for word in line.split(' ') {
        let word = if word.starts_with("sha256:") && word.len() == 71 {
            "IMAGE".to_owned()
        } else if let Some(at) = word.find(":build-").or_else(|| word.find(":merge-")) {
            let (name, rest) = word.split_at(at);
            let kind = if rest.starts_with(":build-") {
                "build"
            } else {
                "merge"
            };
            let tail: String = rest[kind.len() + 2..]
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .to_owned();
            format!("{name}:{kind}-PID{tail}")
        } else if word.contains("/build-") && word.ends_with(".list-id") {
            "LIST-ID-FILE".to_owned()
        } else {
            word.to_owned()
        };
        words.push(word);
    }
    words.join(" ")
}

#[test]
fn a_dry_run_prints_exactly_what_the_real_run_then_runs() {
    let _serial = serial();
    let registry = Registry::start("dry-equal");
    let host = registry.host();
    let service = ServiceRepository::new("dry-equal", "v0.4.0");
    let common = ["--registry", host.as_str(), "--tls-verify", "false"];
    // The same image for every build, the dry run's and the real one's
    // (push-image and merge build nothing, and take no --file).
    let image = support::small_image(&service.path, "dry-equal-image");
    let image_args = file_and_context(&image);
    let image_args: Vec<&str> = image_args.iter().map(String::as_str).collect();
    let twice = |args: &[&str]| {
        let mut dry: Vec<&str> = args.to_vec();
        dry.extend(common);
        let real = dry.clone();
        dry.push("--dry-run");
        let planned = xtask_in(&service.path, &dry, &[]);
        assert_eq!(planned.status.code(), Some(0), "{}", stderr_of(&planned));
        let done = xtask_in(&service.path, &real, &[]);
        assert_eq!(done.status.code(), Some(0), "{}", stderr_of(&done));
        let (planned, done) = (commands(&planned, true), commands(&done, false));
        assert!(!planned.is_empty());
        assert_eq!(planned, done, "dry run (left) and real run (right) differ");
        planned
    };

    // Build and push (one platform: podman 4.3 may order a two-platform
    // list's entries either way, and the real run then moves one, which a
    // dry run cannot foresee).
    let built = twice(
        &[
            &["build-and-push", "--platform", "linux/amd64"][..],
            &image_args,
        ]
        .concat(),
    );
    assert!(
        built
            .iter()
            .any(|line| line.contains("podman build --platform linux/amd64")),
        "{built:#?}"
    );
    assert_eq!(
        built
            .iter()
            .filter(|line| line.contains("podman manifest push"))
            .count(),
        3,
        "every tag pushed: {built:#?}"
    );
    // The lists just built, pushed again by push-image.
    let pushed = twice(&["push-image"]);
    assert_eq!(pushed.len(), 3, "{pushed:#?}");

    // Both platforms by digest, then the merge.
    let digests = scratch_dir("dry-equal-digests");
    for platform in ["linux/amd64", "linux/arm64"] {
        let file = digests.join(platform.replace('/', "-"));
        let mut args = vec![
            "push-by-digest",
            "--platform",
            platform,
            "--digest-file",
            file.to_str().unwrap(),
        ];
        args.extend(common);
        args.extend(&image_args);
        let output = xtask_in(&service.path, &args, &[]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    }
    let merged = twice(&["merge", "--digests-dir", digests.to_str().unwrap()]);
    assert_eq!(
        merged
            .iter()
            .filter(|line| line.contains("podman manifest add"))
            .count(),
        2,
        "{merged:#?}"
    );
    remove_local(&host);
    let _ = std::fs::remove_dir_all(digests);
    let _ = std::fs::remove_dir_all(&image);
}

#[test]
fn a_registry_that_fails_is_named_and_the_other_keeps_the_release() {
    let _serial = serial();
    let open = Registry::start("declared-open");
    let locked = Registry::start_with_auth("declared-locked", Some(("acme", "not-given")));
    let service = ServiceRepository::new("one-fails", "v0.5.0");
    let image = support::small_image(&service.path, "one-fails-image");
    let registries = format!("{},{}", open.host(), locked.host());
    let output = xtask_in(
        &service.path,
        &[
            &[
                "build-and-push",
                "--platform",
                "linux/amd64",
                "--registry",
                &registries,
                "--tls-verify",
                "false",
                "--json",
            ][..],
            &file_and_context(&image)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ]
        .concat(),
        &[],
    );
    let _ = std::fs::remove_dir_all(&image);
    remove_local(&open.host());
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("FAILED:    {}/{IMAGE}", locked.host())),
        "the summary names the registry: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the release is in {} but NOT in {}",
            open.host(),
            locked.host()
        )),
        "{stderr}"
    );
    // Refused for want of credentials: running it again would not help.
    assert!(
        stderr.contains("The registry refused: check the credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("Run the same command again"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["failed_registries"],
        serde_json::json!([locked.host()])
    );
    assert!(open.tags(IMAGE).contains(&"v0.5.0".to_owned()));
    assert!(locked.stored_tags(IMAGE).is_empty());
}

#[test]
fn refused_runs_leave_nothing_and_a_dry_clean_says_it_removed_nothing() {
    let _serial = serial();
    let service = ServiceRepository::new("refusals", "v0.6.0");
    let lock_of = |registry: &str| {
        support::locks_directory().join(format!(
            "{}.lock",
            format!("{registry}/{IMAGE}").replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ))
    };

    // A build context outside the service's work tree (this repository)
    // would be labelled with the service's commit: refused, naming the flag,
    // the path and the service's root.
    let here = support::repository_root();
    let output = xtask_in(
        &service.path,
        &[
            "build-image",
            "--registry",
            "127.0.0.1:9",
            "--context",
            here.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let root = service.path.canonicalize().unwrap();
    assert!(
        stderr.contains(&format!(
            "the build context {} (from --context) is outside the git work tree of \
             hello-service, {}",
            here.canonicalize().unwrap().display(),
            root.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("$ podman"), "{stderr}");
    assert!(
        !lock_of("127.0.0.1:9").exists(),
        "a refused run leaves no lock file"
    );

    // The declared context above the repository (`..`, the directory of
    // every test's scratch space): refused before anything runs, where it
    // once sent all of it to podman.
    let manifest = service.path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("context = \".\"", "context = \"..\""),
    )
    .unwrap();
    let images = || -> std::collections::BTreeSet<String> {
        podman(&["images", "--all", "--quiet", "--no-trunc"])
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let images_before = images();
    let output = xtask_in(&service.path, &["build-image"], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the build context {} (from `context` in [package.metadata.container-image] of \
             hello-service) is outside the git work tree of hello-service, {}",
            root.parent().unwrap().display(),
            root.display()
        )) && stderr.contains("point `context` at a path inside"),
        "{stderr}"
    );
    assert!(!stderr.contains("$ podman"), "{stderr}");
    let made: Vec<String> = images().difference(&images_before).cloned().collect();
    assert!(made.is_empty(), "no image was made: {made:?}");
    assert!(
        !lock_of("ghcr.io").exists(),
        "a refused run leaves no lock file"
    );
    std::fs::write(&manifest, &text).unwrap();

    // Bad metadata names its key; nothing runs.
    std::fs::write(
        &manifest,
        text.replace("recipe = \"plain\"", "recipe = \"plain\"\nstage = []"),
    )
    .unwrap();
    let output = xtask_in(&service.path, &["build-image", "--dry-run"], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `stage`"), "{stderr}");
    assert!(
        stderr.contains("[package.metadata.container-image]"),
        "{stderr}"
    );
    // A stage's ignore file that is not there: named with its key, before
    // anything is built.
    std::fs::write(
        &manifest,
        text.replace(
            "recipe = \"plain\"",
            "recipe = \"staged\"\nstages = [{ target = \"deps\", platform = \"build\", \
             image-arg = \"DEPS_IMAGE\", ignorefile = \"deps.containerignore\" }]",
        ),
    )
    .unwrap();
    let output = xtask_in(&service.path, &["build-image"], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the ignore file {} of the stage \"deps\" does not exist; fix `ignorefile`",
            service.path.join("deps.containerignore").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("$ podman"), "{stderr}");
    std::fs::write(&manifest, text).unwrap();

    // A dry clean removes nothing and says so.
    let output = xtask_in(&service.path, &["clean-build-cache", "--dry-run"], &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("dry run, nothing was removed"), "{stderr}");
    assert!(!stderr.contains("clean: removed"), "{stderr}");
}
