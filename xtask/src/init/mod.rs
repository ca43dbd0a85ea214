//! `init`: sets a team's repository up for the pipeline, as `cargo dist
//! init` does for cargo-dist. Reads the workspace (`cargo metadata`) and
//! the git remote, chooses the binary package, plans the files it writes
//! (the metadata table in the package's Cargo.toml, a Containerfile, a
//! `.containerignore`, the release workflow, cargo-make tasks when the
//! repository has a Makefile.toml), then writes them. It never replaces a
//! file without `--force`; `--dry-run` prints the plan and each file.

mod templates;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    exec::{Command, Runner, Step},
    flags,
};

/// One workspace member, as the Containerfile needs it: its manifest and
/// its library and binary targets, relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub manifest: String,
    /// `(kind, source path)`: `lib`, `bin`, `custom-build`.
    pub targets: Vec<(String, String)>,
}

/// What `init` read of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub workspace_root: PathBuf,
    pub package: String,
    /// The package's binary (its own name, or the one of several it names
    /// `default-run`).
    pub binary: String,
    pub package_dir: PathBuf,
    /// `owner/package`, and where it goes.
    pub image: String,
    pub registries: Vec<String>,
    pub members: Vec<Member>,
    /// The repository has a Makefile.toml at its root.
    pub cargo_make: bool,
    /// Its remote is on GitHub (the release workflow is GitHub Actions').
    pub github: bool,
}

/// One file `init` writes, adds to, or leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create { path: PathBuf, content: String },
    Replace { path: PathBuf, content: String },
    Append { path: PathBuf, content: String },
    Keep { path: PathBuf, why: String },
    Skip { path: PathBuf, why: String },
}

impl Change {
    fn says(&self) -> String {
        match self {
            Change::Create { path, .. } => format!("write {}", path.display()),
            Change::Replace { path, .. } => format!("replace {} (--force)", path.display()),
            Change::Append { path, .. } => format!("add to {}", path.display()),
            Change::Keep { path, why } => format!("leave {} ({why})", path.display()),
            Change::Skip { path, why } => format!("do not write {} ({why})", path.display()),
        }
    }
}

impl flags::Init {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self);
        let here = std::env::current_dir()?;
        let found = read(&runner, &here, &self)?;
        let changes = plan(&found, self.force, |path| {
            std::fs::read_to_string(path).ok()
        })?;
        if !runner.acts() {
            for change in &changes {
                if let Change::Create { path, content }
                | Change::Replace { path, content }
                | Change::Append { path, content } = change
                {
                    println!("--- {}\n{content}", path.display());
                }
            }
        }
        runner.execute(changes.into_iter().map(step).collect())?;
        if runner.acts() {
            eprintln!(
                "init: {} is set up as {} for {}; next: `podman-release build-image` (both \
                 platforms here), then commit and push a tag v*.*.* (the release workflow)",
                found.package,
                found.image,
                found.registries.join(", ")
            );
        }
        Ok(crate::Status::Success)
    }
}

fn step(change: Change) -> Step<'static> {
    Step::work(change.says(), move |_, _| {
        let (path, content, append) = match &change {
            Change::Keep { .. } | Change::Skip { .. } => return Ok(()),
            Change::Create { path, content } | Change::Replace { path, content } => {
                (path, content, false)
            }
            Change::Append { path, content } => (path, content, true),
        };
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("cannot create {}", directory.display()))?;
        }
        let text = if append {
            let mut text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text + content
        } else {
            content.clone()
        };
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("init: {}", change.says());
        Ok(())
    })
}

/// The build context, the workspace root (Cargo.lock is there), relative
/// to the package's manifest, as the table's paths are.
fn context_of(found: &Found) -> String {
    let depth = found
        .package_dir
        .strip_prefix(&found.workspace_root)
        .map_or(0, |relative| relative.components().count());
    if depth == 0 {
        ".".to_owned()
    } else {
        vec![".."; depth].join("/")
    }
}

/// The files to write, from what was read (pure: `existing` reads a file).
pub fn plan(
    found: &Found,
    force: bool,
    existing: impl Fn(&Path) -> Option<String>,
) -> Result<Vec<Change>> {
    let root = &found.workspace_root;
    let manifest = found.package_dir.join("Cargo.toml");
    let containerfile = found.package_dir.join("Containerfile");
    let mut changes = Vec::new();
    let cargo_toml =
        existing(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    if cargo_toml.contains(&format!(
        "[package.metadata.{}]",
        crate::release::declared::TABLE
    )) {
        changes.push(Change::Keep {
            path: manifest.clone(),
            why: "it already declares [package.metadata.container-image]; edit it there".into(),
        });
    } else {
        changes.push(Change::Append {
            path: manifest.clone(),
            content: templates::metadata_table(found, "Containerfile", &context_of(found)),
        });
    }
    let mut file = |path: PathBuf, content: String| {
        let change = match existing(&path) {
            None => Change::Create { path, content },
            Some(now) if now == content => Change::Keep {
                path,
                why: "already as init writes it".into(),
            },
            Some(_) if force => Change::Replace { path, content },
            Some(_) => Change::Keep {
                path,
                why: "it exists; --force replaces it".into(),
            },
        };
        changes.push(change);
    };
    file(containerfile, templates::containerfile(found));
    file(
        root.join(".containerignore"),
        templates::CONTAINERIGNORE.to_owned(),
    );
    let workflow = root.join(".github/workflows/release.yml");
    if found.github {
        file(workflow, templates::workflow(found));
    } else {
        changes.push(Change::Skip {
            path: workflow,
            why: "the git remote is not GitHub's; from another CI, run `podman-release \
                  build-and-push` on a tag"
                .into(),
        });
    }
    if found.cargo_make {
        let path = root.join("Makefile.toml");
        let tasks = templates::makefile_tasks(&existing(&path).unwrap_or_default());
        changes.push(if tasks.is_empty() {
            Change::Keep {
                path,
                why: "it has every task".into(),
            }
        } else {
            Change::Append {
                path,
                content: tasks,
            }
        });
    }
    Ok(changes)
}

/// The workspace, the package and the git remote.
fn read(runner: &Runner, here: &Path, flags: &flags::Init) -> Result<Found> {
    let metadata = runner
        .read(
            &Command::new(crate::project::cargo())
                .args(["metadata", "--no-deps", "--format-version", "1"])
                .current_dir(here),
        )
        .map_err(|error| {
            crate::BadInput(vec![format!(
                "init sets up a Rust repository, and cargo finds no workspace in {} ({}): run it \
                 where Cargo.toml is",
                here.display(),
                crate::exec::last_line(&error)
            )])
        })?;
    let remote = git2::Repository::discover(here)
        .ok()
        .and_then(|repository| {
            let url = repository.find_remote("origin").ok()?.url()?.to_owned();
            Some(url)
        });
    from_metadata(&metadata, remote.as_deref(), flags)
        .map_err(|problems| crate::BadInput(problems).into())
}

/// [`Found`] from `cargo metadata`'s answer and the remote's URL (pure).
pub fn from_metadata(
    metadata: &str,
    remote: Option<&str>,
    flags: &flags::Init,
) -> std::result::Result<Found, Vec<String>> {
    let metadata: serde_json::Value =
        serde_json::from_str(metadata).map_err(|error| vec![format!("cargo metadata: {error}")])?;
    let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default());
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let chosen = choose(&packages, flags.package.as_deref(), &root)?;
    let package = chosen["name"].as_str().unwrap_or_default().to_owned();
    let binary = binary_of(chosen, &package)?;
    let (owner, registry) = owner_and_registry(remote);
    // GitHub's remote, or none yet with ghcr.io asked for.
    let github = registry.as_deref() == Some("ghcr.io")
        || (remote.is_none() && flags.registry.as_deref() == Some("ghcr.io"));
    let registries = match (&flags.registry, registry) {
        (Some(registry), _) => vec![registry.clone()],
        (None, Some(registry)) => vec![registry],
        (None, None) => {
            return Err(vec![format!(
                "cannot tell the registry from the git remote ({}): pass --registry HOST (and \
                 --name OWNER/NAME)",
                remote.unwrap_or("no remote named origin")
            )])
        }
    };
    let image = match (&flags.name, owner) {
        (Some(name), _) => name.clone(),
        (None, Some(owner)) => format!("{owner}/{package}"),
        (None, None) => package.clone(),
    }
    .to_lowercase();
    let package_dir = Path::new(chosen["manifest_path"].as_str().unwrap_or_default())
        .parent()
        .unwrap_or(&root)
        .to_owned();
    Ok(Found {
        cargo_make: root.join("Makefile.toml").is_file(),
        github,
        members: members(&packages, &root),
        workspace_root: root,
        package,
        binary,
        package_dir,
        image,
        registries,
    })
}

/// The names of a package's binary targets.
fn binaries(package: &serde_json::Value) -> Vec<String> {
    package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect()
}

/// The binary package named, or the only one.
fn choose<'a>(
    packages: &'a [serde_json::Value],
    named: Option<&str>,
    root: &Path,
) -> std::result::Result<&'a serde_json::Value, Vec<String>> {
    let with_binaries: Vec<&serde_json::Value> = packages
        .iter()
        .filter(|package| !binaries(package).is_empty())
        .collect();
    let names: Vec<&str> = with_binaries
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    match (named, with_binaries.as_slice()) {
        (Some(name), _) => with_binaries
            .iter()
            .find(|package| package["name"] == name)
            .copied()
            .ok_or_else(|| {
                vec![format!(
                    "--package {name}: the workspace has no binary package of that name (those \
                     with a binary: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )]
            }),
        (None, [one]) => Ok(one),
        (None, []) => Err(vec![format!(
            "the workspace at {} has no binary package: an image runs a binary; add one \
             (src/main.rs, or a [[bin]]) and run init again",
            root.display()
        )]),
        (None, _) => Err(vec![format!(
            "the workspace has several binary packages ({}): say which one the image runs with \
             --package NAME",
            names.join(", ")
        )]),
    }
}

/// The binary the image runs: `default-run`, the package's namesake, or
/// the only one.
fn binary_of(
    chosen: &serde_json::Value,
    package: &str,
) -> std::result::Result<String, Vec<String>> {
    let bins = binaries(chosen);
    chosen["default_run"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| bins.iter().find(|bin| *bin == package).cloned())
        .or_else(|| (bins.len() == 1).then(|| bins[0].clone()))
        .ok_or_else(|| {
            vec![format!(
                "{package} has several binaries ({}) and no default-run: set `default-run` in \
                 its [package]",
                bins.join(", ")
            )]
        })
}

/// Every member's manifest and library and binary targets, relative to
/// the workspace root.
fn members(packages: &[serde_json::Value], root: &Path) -> Vec<Member> {
    let relative = |path: &str| {
        Path::new(path)
            .strip_prefix(root)
            .unwrap_or(Path::new(path))
            .to_string_lossy()
            .into_owned()
    };
    packages
        .iter()
        .map(|package| Member {
            manifest: relative(package["manifest_path"].as_str().unwrap_or_default()),
            targets: package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|target| {
                    let kind = match target["kind"].as_array()?.first()?.as_str()? {
                        "bin" | "custom-build" => "bin",
                        "lib" | "rlib" | "cdylib" | "proc-macro" => "lib",
                        _ => return None,
                    };
                    let path = relative(target["src_path"].as_str()?);
                    Some((kind.to_owned(), path))
                })
                .collect(),
        })
        .collect()
}

/// The owner (lowercase) and the registry a remote's host gives:
/// `git@github.com:Acme/svc.git` → `acme`, ghcr.io; GitLab's path →
/// registry.gitlab.com (pure).
pub fn owner_and_registry(remote: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(url) = remote else {
        return (None, None);
    };
    let rest = url
        .trim_end_matches(".git")
        .trim_end_matches('/')
        .split_once("://")
        .map_or(url, |(_, rest)| rest);
    // `git@host:path` or `[user@]host/path`.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let (host, path) = rest
        .split_once([':', '/'])
        .map_or((rest, ""), |(host, path)| (host, path));
    let host = host.split(':').next().unwrap_or(host);
    let owner = path.rsplit_once('/').map(|(owner, _)| owner.to_lowercase());
    match host {
        "github.com" => (owner, Some("ghcr.io".to_owned())),
        "gitlab.com" => (owner, Some("registry.gitlab.com".to_owned())),
        _ => (owner, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(package: Option<&str>) -> flags::Init {
        flags::Init {
            package: package.map(str::to_owned),
            registry: None,
            name: None,
            force: false,
            dry_run: false,
        }
    }

    fn metadata(packages: &str) -> String {
        format!(r#"{{"workspace_root":"/w","packages":[{packages}]}}"#)
    }

    const TINY: &str = r#"{"name":"tiny","manifest_path":"/w/Cargo.toml","targets":[{"kind":["bin"],"name":"tiny","src_path":"/w/src/main.rs"}]}"#;
    const UTIL: &str = r#"{"name":"util","manifest_path":"/w/util/Cargo.toml","targets":[{"kind":["lib"],"name":"util","src_path":"/w/util/src/lib.rs"}]}"#;
    const OTHER: &str = r#"{"name":"other","manifest_path":"/w/other/Cargo.toml","targets":[{"kind":["bin"],"name":"other","src_path":"/w/other/src/main.rs"}]}"#;

    #[test]
    fn a_remote_gives_the_owner_and_the_registry() {
        for url in [
            "https://github.com/Acme/tiny.git",
            "git@github.com:Acme/tiny.git",
            "ssh://git@github.com/acme/tiny",
        ] {
            assert_eq!(
                owner_and_registry(Some(url)),
                (Some("acme".to_owned()), Some("ghcr.io".to_owned())),
                "{url}"
            );
        }
        assert_eq!(
            owner_and_registry(Some("https://gitlab.com/group/sub/tiny.git"))
                .1
                .as_deref(),
            Some("registry.gitlab.com")
        );
        assert_eq!(
            owner_and_registry(Some("https://git.example.com/a/b")).1,
            None
        );
        assert_eq!(owner_and_registry(None), (None, None));
    }

    #[test]
    fn the_package_is_the_only_binary_one_or_the_one_named() {
        let found = from_metadata(
            &metadata(&format!("{TINY},{UTIL}")),
            Some("https://github.com/Acme/Tiny"),
            &flags(None),
        )
        .unwrap();
        assert_eq!(
            (found.package.as_str(), found.image.as_str()),
            ("tiny", "acme/tiny")
        );
        assert_eq!(found.registries, ["ghcr.io"]);
        assert_eq!(
            found.members[1].targets,
            [("lib".to_owned(), "util/src/lib.rs".to_owned())]
        );
        let several = from_metadata(&metadata(&format!("{TINY},{OTHER}")), None, &flags(None));
        assert!(several.unwrap_err()[0].contains("several binary packages (tiny, other)"));
        let none = from_metadata(&metadata(UTIL), None, &flags(None)).unwrap_err();
        assert!(none[0].contains("has no binary package"), "{none:?}");
        let chosen = from_metadata(
            &metadata(&format!("{TINY},{OTHER}")),
            Some("git@github.com:acme/x.git"),
            &flags(Some("other")),
        )
        .unwrap();
        assert_eq!(chosen.package_dir, PathBuf::from("/w/other"));
        let unknown = from_metadata(&metadata(TINY), None, &flags(Some("nope"))).unwrap_err();
        assert!(unknown[0].contains("--package nope"), "{unknown:?}");
        let no_registry = from_metadata(&metadata(TINY), None, &flags(None)).unwrap_err();
        assert!(
            no_registry[0].contains("--registry HOST"),
            "{no_registry:?}"
        );
    }

    #[test]
    fn init_never_replaces_a_file_without_force_and_keeps_a_declared_table() {
        let found = from_metadata(
            &metadata(&format!("{TINY},{OTHER}")),
            Some("git@github.com:acme/x.git"),
            &flags(Some("other")),
        )
        .unwrap();
        let existing = |path: &Path| match path.to_str().unwrap() {
            "/w/other/Cargo.toml" => Some("[package]\nname = \"other\"\n".to_owned()),
            "/w/.containerignore" => Some("mine\n".to_owned()),
            _ => None,
        };
        let changes = plan(&found, false, existing).unwrap();
        let says: Vec<String> = changes.iter().map(Change::says).collect();
        assert_eq!(
            says,
            [
                "add to /w/other/Cargo.toml",
                "write /w/other/Containerfile",
                "leave /w/.containerignore (it exists; --force replaces it)",
                "write /w/.github/workflows/release.yml",
            ]
        );
        let Change::Append { content, .. } = &changes[0] else {
            unreachable!()
        };
        assert!(content.contains("context = \"..\""), "{content}");
        let forced = plan(&found, true, existing).unwrap();
        assert_eq!(forced[2].says(), "replace /w/.containerignore (--force)");
        let gitlab = from_metadata(
            &metadata(TINY),
            Some("https://gitlab.com/acme/tiny.git"),
            &flags(None),
        )
        .unwrap();
        let says: Vec<String> = plan(&gitlab, false, |path: &Path| {
            (path == Path::new("/w/Cargo.toml")).then(|| "[package]\n".to_owned())
        })
        .unwrap()
        .iter()
        .map(Change::says)
        .collect();
        assert!(
            says[3].starts_with(
                "do not write /w/.github/workflows/release.yml (the git remote is not GitHub's"
            ),
            "{says:?}"
        );
        let declared = |path: &Path| {
            (path == Path::new("/w/other/Cargo.toml"))
                .then(|| "[package.metadata.container-image]\nname = \"a/b\"\n".to_owned())
        };
        assert!(plan(&found, true, declared).unwrap()[0]
            .says()
            .starts_with("leave /w/other/Cargo.toml"));
    }
}
