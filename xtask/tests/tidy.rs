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
    // exec/ spawns every command (echoed, dry-run aware, interruptible).
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
        &["exec/", "registry/loopback.rs"],
    );
    assert!(
        found.is_empty(),
        "a process is spawned outside exec/; build an exec::Command and run it with a Runner:\n{}",
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
fn whether_a_run_is_dry_is_the_executors_business_alone() {
    // Commands plan steps (exec::Step) the same way in a dry run and a real
    // one; the executor prints or runs them. `--dry-run` is read in
    // flags.rs and known in exec/ only: no command branches on it.
    let found = offenders(&["dry_run"], &["exec/", "flags.rs"]);
    assert!(
        found.len() <= 5,
        "`dry_run` on {} lines outside exec/ and flags.rs (at most 5); plan steps and let \
         Runner::execute print or run them:\n{}",
        found.len(),
        found.join("\n")
    );
    assert!(
        found.iter().all(|line| !line.contains("runner.dry_run")),
        "{found:#?}"
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // A rule that can no longer match anything protects nothing.
    assert!(!offenders(&["duct::"], &[]).is_empty(), "exec/ uses duct");
    assert!(
        !offenders(&["dry_run"], &[]).is_empty(),
        "exec/ and flags.rs know it"
    );
    assert!(!offenders(&["podman::PROGRAM"], &[]).is_empty());
    assert!(!offenders(&["\"REGISTRY_TOKEN\""], &[]).is_empty());
}

/// The layers of `xtask/src`, lowest first (ARCHITECTURE.md draws them): a
/// module imports only from its own layer or below, and no modules import
/// each other round in a cycle, so a reader can tell the ground from the roof
/// and a change reaches only what is above it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "ground: processes, signals, platforms, the CLI types, this checkout",
        &["exec", "interrupt", "platform", "flags", "project"],
    ),
    (
        "the engine: podman's argv, its JSON, capabilities",
        &["engine"],
    ),
    (
        "registries, and what a release is (metadata, git, tags, lock)",
        &["registry", "release"],
    ),
    (
        "the commands",
        &[
            "setup",
            "disk",
            "clean",
            "base_images",
            "build",
            "report",
            "sign",
            "push",
            "reproduce",
            "init",
        ],
    ),
    (
        "the test lanes and the benchmark",
        &["suite", "lane", "test", "bench"],
    ),
];

/// Each top-level module of `src/` (a file or a directory) and the modules
/// its code names through `crate::` (in `use crate::{a, b::c}` or a path).
fn module_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut imports =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for (path, code) in sources() {
        let first = path
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "main" {
            continue;
        }
        let code: String = code
            .lines()
            .map(|line| line.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let named = imports.entry(module.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::{c, d}, e}`: the first segment of each
                // item at the group's own depth.
                let mut depth = 0;
                let mut item_start = true;
                for (index, character) in group.char_indices() {
                    match character {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            rest = &group[index..];
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        character
                            if item_start && (character.is_alphabetic() || character == '_') =>
                        {
                            let name: String = group[index..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            named.insert(name);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                named.insert(name);
            }
        }
        named.remove(&module);
    }
    let modules: std::collections::BTreeSet<String> = imports.keys().cloned().collect();
    for named in imports.values_mut() {
        named.retain(|name| modules.contains(name));
    }
    imports
}

#[test]
fn modules_import_from_their_layer_or_below_and_never_in_a_cycle() {
    let imports = module_imports();
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .position(|(_, modules)| modules.contains(&module))
    };
    let mut problems = Vec::new();
    for (module, named) in &imports {
        let Some(layer) = layer_of(module) else {
            problems.push(format!(
                "src/{module} is in no layer: add it to LAYERS in tests/tidy.rs (and to \
                 ARCHITECTURE.md's drawing)"
            ));
            continue;
        };
        for import in named {
            if layer_of(import).is_some_and(|imported| imported > layer) {
                problems.push(format!(
                    "src/{module} ({}) imports {import} ({}), a layer above it: move what it \
                     needs down, or the caller up",
                    LAYERS[layer].0,
                    LAYERS[layer_of(import).unwrap()].0
                ));
            }
        }
    }
    // A cycle: a module that reaches itself (depth-first, bounded by the
    // number of modules).
    for start in imports.keys() {
        let mut path = vec![start.clone()];
        let mut stack = vec![(start.clone(), 0usize)];
        let mut seen = std::collections::BTreeSet::new();
        while let Some((module, depth)) = stack.pop() {
            path.truncate(depth);
            path.push(module.clone());
            for next in &imports[&module] {
                if next == start {
                    problems.push(format!("import cycle: {} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) && depth < imports.len() {
                    stack.push((next.clone(), depth + 1));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_import_reader_sees_groups_and_paths() {
    let imports = module_imports();
    // `use crate::{engine::{podman, storage, Engine}, exec::Runner, ...}`.
    assert!(imports["disk"].contains("engine") && imports["disk"].contains("exec"));
    // `crate::engine::HOST_CA_BUNDLE` in a path.
    assert!(imports["lane"].contains("engine"));
    assert!(imports["flags"].is_empty(), "{:?}", imports["flags"]);
}

/// A production function's name if `line` starts one (`fn`, `pub fn`,
/// `pub(crate) fn`, ... at any indentation), with that indentation.
fn function_start(line: &str) -> Option<(&str, &str)> {
    let indentation = &line[..line.len() - line.trim_start().len()];
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(inner) => inner.split_once(") ")?.1,
            None => after.strip_prefix(' ')?,
        };
    }
    let rest = rest.strip_prefix("const ").unwrap_or(rest);
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some((indentation, &name[..end]))
}

const MOST_LINES_IN_A_FILE: usize = 700;
const MOST_LINES_IN_A_FUNCTION: usize = 80;

#[test]
fn files_and_functions_stay_a_size_a_reader_can_hold() {
    let mut problems = Vec::new();
    for (path, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        if lines.len() > MOST_LINES_IN_A_FILE {
            problems.push(format!(
                "src/{} has {} lines of code (at most {MOST_LINES_IN_A_FILE}, its tests aside): \
                 split it by concern",
                path.display(),
                lines.len()
            ));
        }
        let mut index = 0;
        while index < lines.len() {
            if let Some((indentation, name)) = function_start(lines[index]) {
                let closing = format!("{indentation}}}");
                let end = (index..lines.len())
                    .find(|&end| lines[end] == closing)
                    .unwrap_or(index);
                let length = end - index + 1;
                if length > MOST_LINES_IN_A_FUNCTION {
                    problems.push(format!(
                        "src/{}:{}: fn {name} has {length} lines (at most \
                         {MOST_LINES_IN_A_FUNCTION}): give its parts names of their own",
                        path.display(),
                        index + 1
                    ));
                }
                index = end;
            }
            index += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_size_check_sees_every_kind_of_function() {
    assert_eq!(function_start("fn run(x: u8) {"), Some(("", "run")));
    assert_eq!(
        function_start("    pub(super) fn lacking<'a>(&self) {"),
        Some(("    ", "lacking"))
    );
    assert_eq!(
        function_start("    pub const fn new() -> Self {"),
        Some(("    ", "new"))
    );
    assert_eq!(function_start("    let function = 1;"), None);
    assert_eq!(function_start("// fn commented() {"), None);
}
