//! Invariants of the source, checked the way rust-analyzer's `tidy` checks
//! its own: by reading the files. Each names the rule, where it was broken,
//! and the way to keep it.

use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(directory: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                found.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    assert!(files.len() > 20, "the xtask's sources were not found");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            // The code, not its unit tests (which build commands to look at).
            let code = match text.find("\n#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            (path.strip_prefix(&root).unwrap().to_path_buf(), code)
        })
        .collect()
}

/// `(file, line number, line)` of every line of the code that contains
/// one of `needles`, outside the files `allowed` (paths under `src/`).
fn offenders(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    sources()
        .iter()
        .filter(|(path, _)| !allowed.iter().any(|allowed| path.starts_with(allowed)))
        .flat_map(|(path, code)| {
            code.lines()
                .enumerate()
                .filter(|(_, line)| {
                    let line = line.trim_start();
                    !line.starts_with("//") && needles.iter().any(|needle| line.contains(needle))
                })
                .map(|(number, line)| {
                    format!("src/{}:{}: {}", path.display(), number + 1, line.trim())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn processes_are_spawned_by_the_executor_only() {
    // exec.rs spawns every command (echoed, dry-run aware, interruptible).
    // The loopback registry (the benchmark's and the tests') is a server
    // that lives as long as its owner, stopped on drop.
    let found = offenders(
        &[
            "std::process::Command",
            "process::Command::new",
            "duct::",
            ".spawn()",
            "libc::fork",
            "libc::exec",
        ],
        &["exec.rs", "registry/loopback.rs"],
    );
    assert!(
        found.is_empty(),
        "a process is spawned outside exec.rs; build an exec::Command and run it with a Runner:\n{}",
        found.join("\n")
    );
}

#[test]
fn podman_command_lines_are_spelled_in_the_engine_module() {
    // engine/ spells podman's command lines; registry/ those that talk to a
    // registry (login, push). The test lanes run podman itself (the nested
    // engine's run/exec), and the benchmark measures raw podman against us.
    let found = offenders(
        &["podman::PROGRAM", "Command::new(\"podman\")"],
        &["engine/", "registry/", "lane.rs", "bench/"],
    );
    assert!(
        found.is_empty(),
        "podman's argv is spelled outside engine/ (add a builder to engine/podman.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn secrets_reach_children_on_stdin_only() {
    // The variables that hold secrets are read in one place...
    let found = offenders(
        &[
            "\"REGISTRY_TOKEN\"",
            "\"REGISTRY_PASSWORD\"",
            "\"GITHUB_TOKEN\"",
        ],
        &["registry/mod.rs"],
    );
    assert!(
        found.is_empty(),
        "a secret's variable is read outside registry/mod.rs (credentials_from_env):\n{}",
        found.join("\n")
    );
    // The signing key's password, likewise, in sign/mod.rs only.
    let found = offenders(&["COSIGN_PASSWORD\""], &["sign/mod.rs"]);
    assert!(
        found.is_empty(),
        "the signing key's password is read outside sign/mod.rs:\n{}",
        found.join("\n")
    );
    let passwords = offenders(&["password.clone()", "password.to_vec()"], &[]);
    assert!(
        !passwords.is_empty()
            && passwords
                .iter()
                .all(|line| line.contains("Stdin::Secret(password.clone())")),
        "the signing key's password is used other than as Stdin::Secret:\n{}",
        passwords.join("\n")
    );
    // ...and a secret's bytes go nowhere but a command's stdin, which
    // exec::Command never prints.
    let uses = offenders(&[".secret"], &[]);
    assert!(
        !uses.is_empty(),
        "the check no longer sees Credentials.secret"
    );
    let elsewhere: Vec<&String> = uses
        .iter()
        .filter(|line| !line.contains("Stdin::Secret(credentials.secret.clone())"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "a secret is used other than as Stdin::Secret (it could reach argv, env or output):\n{}",
        elsewhere
            .iter()
            .map(|line| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nothing sets a child's environment from a variable that holds one.
    let env_from_secret = offenders(
        &[
            ".env(\"REGISTRY_TOKEN",
            ".env(\"GITHUB_TOKEN",
            ".env(\"REGISTRY_PASSWORD",
        ],
        &[],
    );
    assert!(env_from_secret.is_empty(), "{}", env_from_secret.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    // A rule that can no longer match anything protects nothing.
    assert!(!offenders(&["duct::"], &[]).is_empty(), "exec.rs uses duct");
    assert!(!offenders(&["podman::PROGRAM"], &[]).is_empty());
    assert!(!offenders(&["\"REGISTRY_TOKEN\""], &[]).is_empty());
}
