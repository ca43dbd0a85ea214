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

/// One command of a run: the branch it ran in (`linux/arm64`, `latest`;
/// empty for the main line) and the command, with what differs between two
/// runs of one plan made the same (see [`normalize`]).
type Line = (String, String);

/// `[name] rest` → `("name", "rest")`; no prefix → `("", line)`.
fn branch_of(line: &str) -> (String, &str) {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .map_or((String::new(), line), |(name, rest)| {
            (name.to_owned(), rest)
        })
}

/// The commands a dry run printed (its stdout less its `# ` lines); the
/// alternative of a fallback (`# if that fails, instead:` ... `# end of
/// the alternative`) only when the real run is expected to take it.
fn planned(output: &std::process::Output, fell_back: bool) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut skipping = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (branch, rest) = branch_of(line);
        if rest.starts_with("# if that fails, instead:") {
            skipping += usize::from(!fell_back || skipping > 0);
        } else if rest.starts_with("# end of the alternative") {
            skipping = skipping.saturating_sub(1);
        } else if !rest.starts_with('#') && skipping == 0 {
            lines.push((branch, normalize(rest)));
        }
    }
    lines
}

/// The commands a real run echoed (`[name] $ command`), in order. A push
/// the real run retried (a registry may answer 500 while other tags of the
/// list are written) counts once: the `push: attempt N of M failed;
/// retrying` notice takes back the last command echoed in its branch.
fn ran(output: &std::process::Output) -> Vec<Line> {
    let mut echoed: Vec<Line> = Vec::new();
    for line in stderr_of(output).lines() {
        let (branch, rest) = branch_of(line);
        if let Some(command) = rest.strip_prefix("$ ") {
            echoed.push((branch, normalize(command)));
        } else if rest.starts_with("push: attempt ") && rest.contains("failed; retrying") {
            let retried = echoed
                .iter()
                .rposition(|(echoed_branch, _)| *echoed_branch == branch)
                .unwrap_or_else(|| panic!("a retry of no command: {line}"));
            echoed.remove(retried);
        }
    }
    echoed
}

/// Each branch's commands in order (branches that run side by side
/// interleave their echo, so each is compared in its own order; the main
/// line is one of them).
fn by_branch(lines: &[Line]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut branches: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (branch, command) in lines {
        branches
            .entry(branch.clone())
            .or_default()
            .push(command.clone());
    }
    branches
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
    let line = |branch: &str, command: &str| (branch.to_owned(), command.to_owned());
    assert_eq!(
        ran(&output),
        [
            line("", "podman manifest push A docker://r/n:v1"),
            line("latest", "podman manifest push A docker://r/n:latest"),
            line("abc1234", "podman manifest push A docker://r/n:abc1234"),
        ]
    );
}

#[test]
fn a_dry_runs_alternative_counts_only_where_the_real_run_took_it() {
    let stdout = "podman build --platform a,b .\n\
                  # if that fails, instead: each platform on its own\n\
                  [a] podman build --platform a .\n\
                  [a] # if that fails: a is left out\n\
                  # end of the alternative\n\
                  # then: the tags move\n\
                  podman tag X v1\n";
    let output = std::process::Output {
        status: std::process::ExitStatus::default(),
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    };
    let line = |branch: &str, command: &str| (branch.to_owned(), command.to_owned());
    assert_eq!(
        planned(&output, false),
        [
            line("", "podman build --platform a,b ."),
            line("", "podman tag X v1")
        ]
    );
    assert_eq!(
        planned(&output, true),
        [
            line("", "podman build --platform a,b ."),
            line("a", "podman build --platform a ."),
            line("", "podman tag X v1")
        ]
    );
}

#[test]
fn what_differs_between_two_runs_of_one_plan_is_made_the_same() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        normalize(&format!(
            "skopeo copy dir:/tmp/rc-xtask-digest-push-123-4 docker://r/n@{digest}"
        )),
        "skopeo copy dir:/tmp/rc-xtask-digest-push-PID docker://r/n@VALUE"
    );
    assert_eq!(
        normalize("skopeo copy dir:/tmp/rc-xtask-digest-push-99-0 docker://r/n@<digest of the saved manifest>"),
        "skopeo copy dir:/tmp/rc-xtask-digest-push-PID docker://r/n@VALUE"
    );
    assert_eq!(
        normalize("podman tag r/n:build-4242 r/n:v1 '<image ID of the built list>' x"),
        "podman tag r/n:build-PID r/n:v1 VALUE x"
    );
    assert_eq!(
        normalize("skopeo copy 'docker://r/n@<digest of the saved manifest>'"),
        "skopeo copy docker://r/n@VALUE"
    );
    assert_eq!(normalize(&"0f".repeat(32)), "VALUE");
}

/// What differs between two runs of one plan, made the same: the values
/// a dry run cannot know (`<image ID of ...>`, `<digest of ...>`) and the
/// real run's (`sha256:` digests, image IDs) become `VALUE`; process IDs in
/// temporary names and variables become `PID`.
fn normalize(line: &str) -> String {
    let mut text = line.to_owned();
    // A dry run's placeholders, quoted or not.
    while let Some(start) = text.find('<') {
        let Some(length) = text[start..].find('>') else {
            break;
        };
        let (mut from, mut to) = (start, start + length + 1);
        if text[..from].ends_with('\'') && text[to..].starts_with('\'') {
            from -= 1;
            to += 1;
        }
        text.replace_range(from..to, "VALUE");
    }
    // A word with a placeholder was quoted for the shell; its value is not.
    let text = text.replace("sha256:", "").replace('\'', "");
    // 64 hexadecimal digits: a digest or an image ID.
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let word = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (head, tail) = rest.split_at(word);
        let hex = head.len() == 64
            && head
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        out.push_str(if hex { "VALUE" } else { head });
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    for marker in [
        ":build-",
        "/build-",
        ":merge-",
        "rc-xtask-digest-push-",
        "rc-xtask-builders-",
        "rc-xtask-attest-",
        "XTASK_LOCK_HELD_BY=",
    ] {
        let mut done = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(marker) {
            let after = &rest[at + marker.len()..];
            let digits = after
                .bytes()
                .take_while(|byte| byte.is_ascii_digit() || *byte == b'-')
                .count();
            done.push_str(&rest[..at + marker.len()]);
            done.push_str(if digits > 0 { "PID" } else { "" });
            rest = &after[digits..];
        }
        done.push_str(rest);
        out = done;
    }
    out
}

/// Both runs of one command: its dry run (which must succeed) and its real
/// run (which must exit with `code`), compared branch by branch, each in
/// order; `fell_back`: the real run is expected to take the fallback.
/// Returns the dry run's commands.
fn dry_then_real(root: &std::path::Path, args: &[&str], code: i32, fell_back: bool) -> Vec<Line> {
    let dry = [args, &["--dry-run"][..]].concat();
    let planned_output = xtask_in(root, &dry, &[]);
    assert_eq!(
        planned_output.status.code(),
        Some(0),
        "{}",
        stderr_of(&planned_output)
    );
    let done = xtask_in(root, args, &[]);
    assert_eq!(done.status.code(), Some(code), "{}", stderr_of(&done));
    let plan = planned(&planned_output, fell_back);
    let mut real = ran(&done);
    // podman 4.3 may order a two-platform list's entries either way; the
    // list's check then moves one (re-adds its image), a step decided by
    // what the check reads, which no plan can name before the build.
    if stderr_of(&done).contains("build-image: putting the entries of") {
        real.retain(|(branch, command)| {
            !(branch.is_empty()
                && (command.starts_with("podman manifest add ")
                    || command.starts_with("podman manifest remove ")))
        });
    }
    // A builder's child runs its own plan (push-by-digest's, compared
    // on its own); its parent's branch is the child's command.
    if args.contains(&"--builder") {
        real.retain(|(branch, command)| {
            !branch.starts_with("linux/") || command.contains(" push-by-digest ")
        });
    }
    assert!(!plan.is_empty());
    assert_eq!(
        by_branch(&plan),
        by_branch(&real),
        "dry run (left) and real run (right) differ; the dry run printed:\n{}",
        String::from_utf8_lossy(&planned_output.stdout)
    );
    plan
}

fn count(lines: &[Line], what: &str) -> usize {
    lines
        .iter()
        .filter(|(_, command)| command.contains(what))
        .count()
}

#[test]
fn a_dry_run_prints_exactly_what_the_real_run_then_runs() {
    let _serial = serial();
    let registry = Registry::start("dry-equal");
    let host = registry.host();
    let service = ServiceRepository::new("dry-equal", "v0.4.0");
    let root = service.path.as_path();
    let common = ["--registry", host.as_str(), "--tls-verify", "false"];
    // The same image for every build, the dry run's and the real one's
    // (push-image and merge build nothing, and take no --file).
    let image = support::small_image(root, "dry-equal-image");
    let image_args = file_and_context(&image);
    let with = |args: &[&str], more: &[&str]| -> Vec<String> {
        [args, more, &common[..]]
            .concat()
            .iter()
            .map(|arg| arg.to_string())
            .collect()
    };
    let image_args: Vec<&str> = image_args.iter().map(String::as_str).collect();
    let twice = |args: Vec<String>, code: i32, fell_back: bool| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dry_then_real(root, &args, code, fell_back)
    };

    // Both platforms at once; the push beside the tags' move.
    let built = twice(with(&["build-and-push"], &image_args), 0, false);
    assert_eq!(
        count(&built, "podman build --platform linux/amd64,linux/arm64"),
        1,
        "{built:#?}"
    );
    assert_eq!(
        count(&built, "podman manifest push"),
        3,
        "every tag pushed: {built:#?}"
    );
    // The lists just built, pushed again by push-image.
    let pushed = twice(with(&["push-image"], &[]), 0, false);
    assert_eq!(count(&pushed, "podman manifest push"), 3, "{pushed:#?}");

    // The fallback: arm64 fails all at once and on its own; amd64 is built
    // on its own, and tagged (--latest-on-partial), in the planned order.
    let failing = support::containerfile_failing_for_arm64(root, "dry-equal-arm64-fails");
    let failing_args = file_and_context(&failing);
    let failing_args: Vec<&str> = failing_args.iter().map(String::as_str).collect();
    // (build-image: no push, so no --tls-verify)
    let fell_back = dry_then_real(
        root,
        &[
            &["build-image", "--latest-on-partial", "--registry", &host][..],
            &failing_args,
        ]
        .concat(),
        3,
        true,
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            fell_back.iter().any(|(branch, command)| branch == platform
                && command.contains(&format!("podman build --platform {platform} "))),
            "{platform} on its own: {fell_back:#?}"
        );
    }

    // Each platform by digest, then the merge.
    let digests = scratch_dir("dry-equal-digests");
    for platform in ["linux/amd64", "linux/arm64"] {
        let file = digests.join(platform.replace('/', "-"));
        let by_digest = twice(
            with(
                &[
                    "push-by-digest",
                    "--platform",
                    platform,
                    "--digest-file",
                    file.to_str().unwrap(),
                ],
                &image_args,
            ),
            0,
            false,
        );
        assert_eq!(count(&by_digest, "@VALUE"), 1, "{by_digest:#?}");
    }
    let merged = twice(
        with(&["merge", "--digests-dir", digests.to_str().unwrap()], &[]),
        0,
        false,
    );
    assert_eq!(count(&merged, "podman manifest add"), 2, "{merged:#?}");

    // With a builder: arm64 on a podman of its own storage, reached
    // through its socket (a remote client), amd64 on this machine, side by
    // side, then merged.
    let builder = support::RemoteEngine::start("dry-arm64", None);
    support::give_small_bases(&[&builder], &["localhost/rc-base/runtime:bookworm"]);
    let spec = format!("linux/arm64={}", builder.url);
    let with_builders = twice(
        with(
            &[
                "build-and-push",
                "--builder",
                &spec,
                // The builder has the runtime base only (the image's).
                "--build-arg",
                "BUILDER_IMAGE=localhost/rc-base/runtime:bookworm",
            ],
            &image_args,
        ),
        0,
        false,
    );
    assert_eq!(
        count(&with_builders, " push-by-digest "),
        2,
        "{with_builders:#?}"
    );
    assert_eq!(
        count(&with_builders, "podman manifest add"),
        2,
        "{with_builders:#?}"
    );

    drop(builder);
    remove_local(&host);
    let _ = std::fs::remove_dir_all(digests);
    let _ = std::fs::remove_dir_all(&image);
    let _ = std::fs::remove_dir_all(&failing);
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
