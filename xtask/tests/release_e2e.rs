//! The release as GitHub Actions runs it, here: one push-by-digest per
//! architecture, then merge, against a registry on 127.0.0.1; compared with an
//! all-at-once build-and-push. Also: labels, --json, the GitHub files, the
//! partial-result policy of merge, and reproducible digests.

mod support;

use std::path::Path;

use support::*;

const BOTH: [&str; 2] = ["linux/amd64", "linux/arm64"];

fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "--json printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn platforms_of(report: &serde_json::Value) -> Vec<(String, String)> {
    report["platforms"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(platform, digest)| (platform.clone(), digest.as_str().unwrap().to_owned()))
        .collect()
}

/// The config of `reference` in the registry (labels, created, architecture).
fn remote_config(reference: &str) -> serde_json::Value {
    serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--no-creds",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    ))
    .unwrap()
}

#[test]
fn per_architecture_jobs_and_merge_release_what_build_and_push_releases() {
    let _serial = serial();
    let registry = Registry::start("release");
    let clone = TaggedClone::new("release", "v7.0.0");
    // The pipeline is the subject, not rc-web: a small two-platform image,
    // labelled from the clone's git and Cargo metadata like rc-web's.
    let directory = small_image(&clone.path, "release-image");
    let source = file_and_context(&directory);
    let host = registry.host();
    let digests = scratch_dir("digests");
    let common = ["--registry", &host, "--tls-verify", "false", "--json"];

    // The two build jobs.
    let mut job_digests = Vec::new();
    for platform in ["linux/amd64", "linux/arm64"] {
        let file = digests.join(platform.replace('/', "-"));
        let mut args = vec![
            "push-by-digest",
            "--image",
            "rc-web-jobs",
            "--platform",
            platform,
        ];
        args.extend(common);
        args.extend(source.iter().map(String::as_str));
        args.extend(["--digest-file", file.to_str().unwrap()]);
        let output = xtask_in(&clone.path, &args, &[]);
        assert_eq!(output.status.code(), Some(0), "push-by-digest {platform}");
        let report = json_of(&output);
        let digest = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        assert_eq!(
            platforms_of(&report),
            [(platform.to_owned(), digest.clone())]
        );
        assert!(
            report["tags"].as_array().unwrap().is_empty(),
            "pushed by digest, with no tag"
        );
        job_digests.push((platform.to_owned(), digest));
    }
    assert_eq!(
        registry.stored_tags("rc-web-jobs"),
        Vec::<String>::new(),
        "no tag before the merge"
    );

    // The merge job, with GitHub's files.
    let github = scratch_dir("github-files");
    let (outputs, summary) = (github.join("output"), github.join("summary"));
    let merge = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "merge",
            "--image",
            "rc-web-jobs",
            "--digests-dir",
            digests.to_str().unwrap(),
        ];
        args.extend(common);
        args.extend(extra);
        xtask_in(&clone.path, &args, env)
    };
    let merged = merge(
        &[],
        &[
            ("GITHUB_OUTPUT", outputs.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert_eq!(merged.status.code(), Some(0), "merge");
    let merged = json_of(&merged);

    // The all-at-once build of the same commit.
    let mut args = vec!["build-and-push", "--image", "rc-web-once"];
    args.extend(common);
    args.extend(source.iter().map(String::as_str));
    let once = xtask_in(&clone.path, &args, &[]);
    assert_eq!(once.status.code(), Some(0), "build-and-push");
    let once = json_of(&once);

    let mut tags = vec![
        "latest".to_owned(),
        clone.short_commit(),
        "v7.0.0".to_owned(),
    ];
    tags.sort();
    assert_eq!(registry.stored_tags("rc-web-jobs"), tags);
    assert_eq!(registry.stored_tags("rc-web-once"), tags, "the same tags");
    for tag in &tags {
        assert_eq!(
            index_platforms(&registry.index("rc-web-jobs", tag)),
            index_platforms(&registry.index("rc-web-once", tag)),
            "{tag}: the same platforms"
        );
    }
    assert_eq!(
        platforms_of(&merged),
        platforms_of(&once),
        "the same images, digest for digest"
    );
    let mut sorted_job_digests = job_digests.clone();
    sorted_job_digests.sort();
    assert_eq!(
        platforms_of(&merged),
        sorted_job_digests,
        "the list holds the jobs' digests"
    );
    assert_eq!(merged["failed_platforms"], serde_json::json!([]));
    let list_digest = merged["list_digest"].as_str().unwrap();
    let index = registry.index("rc-web-jobs", "v7.0.0");
    assert_eq!(
        run("sh", &["-c", &format!("printf %s '{index}' | sha256sum")])
            .split_whitespace()
            .next()
            .map(|hex| format!("sha256:{hex}"))
            .as_deref(),
        Some(list_digest),
        "list_digest is the digest of the list in the registry"
    );

    // Labels and annotations, from git and Cargo metadata.
    let amd64 = &job_digests[0].1;
    let config = remote_config(&format!("{host}/rc-web-jobs@{amd64}"));
    let labels = &config["config"]["Labels"];
    let commit = run(
        "git",
        &["-C", &clone.path.to_string_lossy(), "rev-parse", "HEAD"],
    )
    .trim()
    .to_owned();
    let created = run(
        "git",
        &[
            "-C",
            &clone.path.to_string_lossy(),
            "show",
            "-s",
            "--format=%cd",
            "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
            "HEAD",
        ],
    )
    .trim()
    .to_owned();
    for (key, value) in [
        ("title", "rc-web"),
        ("version", "v7.0.0"),
        ("revision", commit.as_str()),
        ("created", created.as_str()),
        ("licenses", "MIT OR Apache-2.0"),
        ("source", "https://github.com/daksha-rc/rc-release"),
    ] {
        assert_eq!(
            labels[format!("org.opencontainers.image.{key}")],
            value,
            "label {key}: {labels}"
        );
    }
    assert!(labels["org.opencontainers.image.description"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    assert_eq!(
        config["created"]
            .as_str()
            .map(|text| text.trim_end_matches('Z').replace(".000000000", "")),
        Some(created.trim_end_matches('Z').to_owned()),
        "the image is dated by the commit"
    );
    let manifest: serde_json::Value = serde_json::from_str(&run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--no-creds",
            "--tls-verify=false",
            &format!("docker://{host}/rc-web-jobs@{amd64}"),
        ],
    ))
    .unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        commit.as_str(),
        "annotations: {manifest}"
    );

    // GitHub's step outputs and job summary.
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(
        outputs.contains(&format!("digest={list_digest}\n")),
        "{outputs}"
    );
    assert!(
        outputs.contains(&format!("image={host}/rc-web-jobs\n")),
        "{outputs}"
    );
    assert!(outputs.contains("partial=false\n"), "{outputs}");
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(
        summary.contains(&format!(
            "| linux/arm64 | pushed | `{}` |",
            job_digests[1].1
        )),
        "{summary}"
    );

    // The arm64 job of a rerun failed. --strict refuses; nothing moves.
    std::fs::remove_file(digests.join("linux-arm64")).unwrap();
    let strict = merge(&["--strict"], &[]);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(
        index_platforms(&registry.index("rc-web-jobs", "v7.0.0")),
        BOTH,
        "--strict moved nothing"
    );

    // Without --strict: amd64 alone is released under the version and the
    // commit, latest is held back (still the complete list), exit 3, and the
    // job summary says so.
    let summary = github.join("partial-summary");
    let partial = merge(&[], &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())]);
    assert_eq!(partial.status.code(), Some(3), "a partial merge exits 3");
    let partial = json_of(&partial);
    assert_eq!(
        partial["failed_platforms"],
        serde_json::json!(["linux/arm64"])
    );
    assert_eq!(partial["held_back"], serde_json::json!(["latest"]));
    assert_eq!(
        index_platforms(&registry.index("rc-web-jobs", "v7.0.0")),
        ["linux/amd64"]
    );
    assert_eq!(
        index_platforms(&registry.index("rc-web-jobs", "latest")),
        BOTH,
        "latest is untouched"
    );
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(
        summary.contains("**Partial result:** linux/arm64 failed")
            && summary.contains("without `latest`"),
        "{summary}"
    );

    for path in [digests, github, directory] {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// A two-stage image whose first stage writes files (new mtimes every run).
fn image_with_a_run_step(directory: &Path) {
    std::fs::write(
        directory.join("Containerfile"),
        "ARG BUILDPLATFORM\nARG TARGETPLATFORM\n\
         FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS build\n\
         ARG TARGETARCH\n\
         RUN mkdir /out && echo \"built for $TARGETARCH\" > /out/arch && cp /etc/os-release /out/\n\
         FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
         COPY --from=build /out /out\n",
    )
    .unwrap();
}

#[test]
fn two_clean_builds_of_one_commit_have_identical_digests() {
    let _serial = serial();
    let registry = Registry::start("reproducible");
    let clone = TaggedClone::new("reproducible", "v1.0.0");
    let directory = context_dir(&clone.path, "reproducible-image");
    image_with_a_run_step(&directory);
    let mut reports = Vec::new();
    for image in ["repro-a", "repro-b"] {
        let output = xtask_in(
            &clone.path,
            &[
                "build-and-push",
                "--no-cache",
                "--registry",
                &registry.host(),
                "--image",
                image,
                "--tls-verify",
                "false",
                "--json",
                "--file",
                directory.join("Containerfile").to_str().unwrap(),
                "--context",
                directory.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(output.status.code(), Some(0), "clean build of {image}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--no-cache"),
            "every step ran again: {stderr}"
        );
        reports.push(json_of(&output));
        // Drop the local images so nothing of the first build is reused.
        for tag in ["v1.0.0", "latest", &clone.short_commit()] {
            let _ = std::process::Command::new("podman")
                .args([
                    "manifest",
                    "rm",
                    &format!("{}/{image}:{tag}", registry.host()),
                ])
                .output();
        }
    }
    assert_eq!(platforms_of(&reports[0]).len(), 2);
    assert_eq!(
        platforms_of(&reports[0]),
        platforms_of(&reports[1]),
        "identical image digests"
    );
    // podman 4.3 orders a multi-platform build's entries as the platforms
    // finish; the xtask puts them in the requested order (docs/release.md).
    assert_eq!(
        reports[0]["list_digest"], reports[1]["list_digest"],
        "identical list digests"
    );
    let _ = std::fs::remove_dir_all(directory);
}
