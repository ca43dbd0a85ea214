//! Adopting the pipeline in another repository, end to end, as a team
//! would: the tool installed with `cargo install` from a copy of this
//! repository that is then deleted (so it must carry its own files), a
//! brand-new git repository with a small binary crate, `init`, then
//! `build-image` and `build-and-push` to a registry on 127.0.0.1: both
//! platforms built, pushed under every tag and read back, the arm64 image
//! runs as aarch64; the workflow `init` wrote passes actionlint.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{
    copy_tree, index_platforms, is_newer_runner_label, lint, podman, repository_root, run,
    scratch_dir, serial, Registry,
};

/// Runs `program` in `directory`; its output, whatever the exit.
fn run_in(directory: &Path, program: &Path, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(directory)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|error| panic!("{}: {error}", program.display()))
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `cargo install` of the tool from a copy of this repository (its
/// workspace: the manifests, the lock file and the members), into a root
/// of its own; the copy is deleted afterwards. The build directory is kept
/// under target/ between runs, so that the dependencies compile once.
fn install_from_a_deleted_copy() -> PathBuf {
    let source = repository_root();
    let copy = scratch_dir("adopt-source");
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(source.join(file), copy.join(file)).unwrap();
    }
    for tree in ["xtask", "rc-web", "containers", ".cargo"] {
        copy_tree(&source.join(tree), &copy.join(tree));
    }
    let root = scratch_dir("adopt-root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["install", "--locked", "--debug", "--quiet", "--path"])
        .arg(copy.join("xtask"))
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(source.join("target/adopt-install"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo install: {}",
        stderr_of(&output)
    );
    std::fs::remove_dir_all(&copy).unwrap();
    root.join("bin/podman-release")
}

/// A new git repository with a binary crate that prints its architecture
/// with a word from a library of its workspace (so the Containerfile's
/// dependency layer meets a member too), and a GitHub remote.
fn tiny_repository() -> PathBuf {
    let path = scratch_dir("adopt-tiny");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(
        &cargo,
        &[
            "init",
            "--quiet",
            "--bin",
            "--name",
            "tiny",
            "--vcs",
            "git",
            path.to_str().unwrap(),
        ],
    );
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\ngreeting = { path = \"crates/greeting\" }\n\n\
             [workspace]\nmembers = [\"crates/greeting\"]\n",
        ),
        (
            "crates/greeting/Cargo.toml",
            "[package]\nname = \"greeting\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        (
            "crates/greeting/src/lib.rs",
            "pub fn word() -> &'static str {\n    \"tiny\"\n}\n",
        ),
        (
            "src/main.rs",
            "fn main() {\n    println!(\"{} on {}\", greeting::word(), std::env::consts::ARCH);\n}\n",
        ),
    ];
    for (file, content) in files {
        let file = path.join(file);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let manifest = path.join("Cargo.toml");
    run(
        &cargo,
        &[
            "generate-lockfile",
            "--offline",
            "--manifest-path",
            manifest.to_str().unwrap(),
        ],
    );
    git(
        &path,
        &[
            "remote",
            "add",
            "origin",
            "https://github.com/Acme/tiny.git",
        ],
    );
    path
}

fn git(repository: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "-C",
        repository.to_str().unwrap(),
        "-c",
        "user.name=Acme",
        "-c",
        "user.email=dev@acme.example",
    ];
    all.extend(args);
    run("git", &all)
}

#[test]
fn a_new_repository_adopts_the_installed_tool_and_releases_both_platforms() {
    let _serial = serial();
    let tool = install_from_a_deleted_copy();
    let repository = tiny_repository();
    // The team uses cargo-make: init adds the tasks it lacks.
    std::fs::write(
        repository.join("Makefile.toml"),
        "[tasks.hello]\ncommand = \"echo\"\nargs = [\"hello\"]\n",
    )
    .unwrap();

    // Installed, it names itself as it is run.
    let help = run_in(&repository, &tool, &["--help"]);
    let usage = String::from_utf8_lossy(&help.stdout);
    assert!(usage.contains("Usage: podman-release <COMMAND>"), "{usage}");
    // A dry run shows every file and writes none.
    let dry = run_in(&repository, &tool, &["init", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr_of(&dry));
    assert!(
        stdout.contains(&format!(
            "--- {}",
            repository.join("Containerfile").display()
        )) && stdout.contains("FROM --platform=$BUILDPLATFORM"),
        "{stdout}"
    );
    assert!(
        !repository.join("Containerfile").exists(),
        "a dry run writes nothing"
    );
    // init: the table, the Containerfile, .containerignore, the workflow.
    let output = run_in(&repository, &tool, &["init"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for written in [
        "add to",
        "write",
        "Containerfile",
        ".containerignore",
        ".github/workflows/release.yml",
    ] {
        assert!(stderr.contains(written), "{written}: {stderr}");
    }
    let tasks = std::fs::read_to_string(repository.join("Makefile.toml")).unwrap();
    assert!(
        tasks.starts_with("[tasks.hello]")
            && tasks.contains("[tasks.build-and-push-amd64]")
            && tasks.contains("command = \"podman-release\""),
        "{tasks}"
    );
    let manifest = std::fs::read_to_string(repository.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"acme/tiny\"\nregistries = [\"ghcr.io\"]"),
        "{manifest}"
    );
    let workflow = repository.join(".github/workflows/release.yml");
    let findings: Vec<_> = lint(std::slice::from_ref(&workflow))
        .into_iter()
        .filter(|(_, _, kind, message)| !is_newer_runner_label(kind, message))
        .collect();
    assert!(findings.is_empty(), "actionlint: {findings:#?}");
    // Again: nothing is replaced.
    let again = run_in(&repository, &tool, &["init"]);
    let stderr = stderr_of(&again);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("init: write") && !stderr.contains("init: add"),
        "{stderr}"
    );
    git(&repository, &["add", "-A"]);
    git(
        &repository,
        &["commit", "--quiet", "-m", "tiny, with its release"],
    );
    git(&repository, &["tag", "v0.1.0"]);

    // The first local build, then the release to a registry.
    let built = run_in(&repository, &tool, &["build-image", "--no-setup"]);
    assert_eq!(built.status.code(), Some(0), "{}", stderr_of(&built));
    // The base images' definitions came from the binary (its source is gone).
    let own = std::fs::read_dir(repository.join("target/xtask/own"))
        .expect("the tool wrote its own files to the scratch space")
        .count();
    assert_eq!(
        own, 3,
        "the two bases' definitions and the builder's Containerfile, by content"
    );
    let registry = Registry::start("adopt");
    let host = registry.host();
    let pushed = run_in(
        &repository,
        &tool,
        &[
            "build-and-push",
            "--no-setup",
            "--registry",
            &host,
            "--tls-verify",
            "false",
            "--no-sign",
        ],
    );
    assert_eq!(pushed.status.code(), Some(0), "{}", stderr_of(&pushed));
    let commit = git(&repository, &["rev-parse", "--short=7", "HEAD"]);
    let mut expected = vec![
        commit.trim().to_owned(),
        "latest".to_owned(),
        "v0.1.0".to_owned(),
    ];
    expected.sort();
    assert_eq!(registry.tags("acme/tiny"), expected);
    for tag in &expected {
        assert_eq!(
            index_platforms(&registry.index("acme/tiny", tag)),
            ["linux/amd64", "linux/arm64"],
            "{tag}"
        );
    }
    for (platform, arch) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let said = podman(&[
            "run",
            "--rm",
            "--tls-verify=false",
            "--platform",
            platform,
            &format!("{host}/acme/tiny:v0.1.0"),
        ]);
        assert_eq!(said.trim(), format!("tiny on {arch}"), "{platform}");
    }

    // A cargo-make task runs the installed tool.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let path = format!(
        "{}:{}",
        tool.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let task = Command::new(cargo)
        .args(["make", "check-disk-space"])
        .current_dir(&repository)
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&task.stdout),
        stderr_of(&task)
    );
    assert!(task.status.success(), "cargo make check-disk-space: {said}");
    assert!(
        said.contains("free:") && said.contains("`podman-release clean-build-cache`"),
        "its report, naming the tool as it is run: {said}"
    );

    for tag in &expected {
        let _ = Command::new("podman")
            .args(["manifest", "rm", &format!("{host}/acme/tiny:{tag}")])
            .output();
    }
    let _ = Command::new("podman")
        .args(["rmi", "--force", &format!("{host}/acme/tiny:v0.1.0")])
        .output();
    let _ = std::fs::remove_dir_all(&repository);
    let _ = std::fs::remove_dir_all(tool.parent().unwrap().parent().unwrap());
}
