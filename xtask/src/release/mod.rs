//! What a release is: the image declared in Cargo metadata, its names in
//! each registry, the git state and the tags, and the lock that keeps two
//! runs from releasing one image at once.

pub mod declared;
pub mod git;
pub mod labels;
pub mod lock;
pub mod reference;
pub mod tags;
pub mod work_tree;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::{
    engine::podman,
    exec::Runner,
    flags,
    platform::{self, Platform},
};

use self::{declared::Declared, git::SourceState, reference::Repository, tags::Tags};

/// What a command was asked to release, besides the names and tags every
/// command shares: each `None` keeps the declared value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides<'a> {
    /// `--platform` (or `BUILD_PLATFORMS`), unparsed, so that its problems
    /// are listed with the others.
    pub platforms: Option<&'a str>,
    pub containerfile: Option<&'a Path>,
    pub context: Option<&'a Path>,
    /// `--cache-repo`: `""` beside the image, else a repository.
    pub cache_repo: Option<&'a str>,
}

/// What a build or a push is named and tagged from, checked together with
/// the caller's own inputs so that one run lists every problem (exit 2).
pub struct Release {
    /// The package's declaration, with the flags applied.
    pub declared: Declared,
    /// The image in each registry; the first one's names the local lists.
    pub repositories: Vec<Repository>,
    pub source: SourceState,
    pub tags: Tags,
}

impl Release {
    pub fn read(
        runner: &Runner,
        image: &flags::ImageFlags,
        overrides: Overrides,
        mut problems: Vec<String>,
    ) -> Result<Release> {
        let declared = match declared::Workspace::read(runner) {
            Ok(workspace) => match workspace.declared(image.package.as_deref()) {
                Ok(declared) => Some(declared),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            },
            Err(error) => {
                problems.push(format!("{error:#}"));
                None
            }
        };
        let origins = (
            overrides.containerfile.is_some(),
            overrides.context.is_some(),
        );
        let declared = declared.map(|declared| apply(declared, image, overrides, &mut problems));
        let repositories: Vec<Repository> = declared
            .iter()
            .flat_map(|declared| {
                declared
                    .registries
                    .iter()
                    .map(|registry| Repository::new(registry, &declared.name))
            })
            .filter_map(|repository| {
                repository
                    .map_err(|error| problems.push(format!("{error:#}")))
                    .ok()
            })
            .collect();
        let date_override = source_date_epoch(std::env::var_os(podman::SOURCE_DATE_EPOCH));
        let source = declared.as_ref().map(|declared| {
            SourceState::read(&declared.workspace_root).map(|mut source| {
                if let Ok(Some(epoch)) = date_override {
                    source.commit_time = epoch;
                }
                source
            })
        });
        if let Some(declared) = &declared {
            problems.extend(work_tree_problems(declared, origins));
        }
        let tags = source
            .as_ref()
            .and_then(|source| source.as_ref().ok())
            .map(|source| tags::compute(source, &tags::Choices::from_flags(image)));
        let errors = [
            date_override.as_ref().err(),
            source.as_ref().and_then(|source| source.as_ref().err()),
            tags.as_ref().and_then(|tags| tags.as_ref().err()),
        ];
        problems.extend(
            errors
                .into_iter()
                .flatten()
                .map(|error| format!("{error:#}")),
        );
        if !problems.is_empty() {
            return Err(crate::BadInput(problems).into());
        }
        Ok(Release {
            declared: declared.expect("no problems"),
            repositories,
            source: source.expect("declared")?,
            tags: tags.expect("source was read")?,
        })
    }

    /// The first registry's: it names the local lists.
    pub fn repository(&self) -> &Repository {
        &self.repositories[0]
    }

    /// The registry layer cache's repository, if there is one.
    pub fn cache_repository(&self) -> Option<Repository> {
        match self.declared.cache_repo.as_ref()? {
            declared::CacheRepo::Beside => Some(self.repository().cache_beside()),
            declared::CacheRepo::At(repository) => Some(repository.clone()),
        }
    }

    /// The lock that keeps two runs from tagging or pushing this image at
    /// once; none in a dry run. Taken after every input check, so a refused
    /// run leaves nothing behind.
    pub fn lock(&self, runner: &Runner, what: &str) -> Result<Option<lock::RepositoryLock>> {
        if lock::held_by_parent() {
            return Ok(None);
        }
        runner.if_real(|| lock::RepositoryLock::acquire(&self.repository().name(), what))
    }
}

/// The declaration with the flags (and their environment variables) applied.
fn apply(
    mut declared: Declared,
    image: &flags::ImageFlags,
    overrides: Overrides,
    problems: &mut Vec<String>,
) -> Declared {
    let registries: Vec<String> = image
        .registries
        .iter()
        .map(|registry| registry.trim().to_owned())
        .filter(|registry| !registry.is_empty())
        .collect();
    if !registries.is_empty() {
        declared.registries = registries;
    }
    if let Some(name) = image.image.as_deref().filter(|name| !name.is_empty()) {
        declared.name = name.to_owned();
    }
    if let Some(platforms) = parse_platforms(overrides.platforms, problems) {
        declared.platforms = platforms;
    }
    let from_here = |path: &Path| -> PathBuf {
        declared::normalize(
            &std::env::current_dir()
                .map(|directory| directory.join(path))
                .unwrap_or_else(|_| path.to_owned()),
        )
    };
    if let Some(file) = overrides.containerfile.map(from_here) {
        // The declared stages are the declared Containerfile's: another
        // file is built as it is, in one build (a plain recipe).
        if file != declared.containerfile && !declared.stages.is_empty() {
            eprintln!(
                "note: --file {} is not the declared Containerfile, so it is built in one build \
                 (the declared stages {} are {}'s)",
                file.display(),
                declared
                    .stages
                    .iter()
                    .map(|stage| stage.target.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                declared.containerfile.display()
            );
            declared.stages.clear();
        }
        declared.containerfile = file;
    }
    if let Some(context) = overrides.context {
        declared.context = from_here(context);
    }
    match overrides.cache_repo.map(str::trim) {
        None => {}
        Some("") => declared.cache_repo = Some(declared::CacheRepo::Beside),
        Some(text) => match Repository::parse(text) {
            Ok(repository) => declared.cache_repo = Some(declared::CacheRepo::At(repository)),
            Err(error) => problems.push(format!("--cache-repo (or CACHE_REPO): {error:#}")),
        },
    }
    problems.extend(missing_paths(&declared));
    declared
}

/// The declared (or given) Containerfile, ignore files and context that are
/// not there.
fn missing_paths(declared: &Declared) -> Vec<String> {
    let mut problems = Vec::new();
    if !declared.containerfile.is_file() {
        problems.push(format!(
            "Containerfile {} does not exist; pass --file PATH, or fix `containerfile` in \
             [package.metadata.{}] of {}",
            declared.containerfile.display(),
            declared::TABLE,
            declared.package.name
        ));
    }
    for stage in &declared.stages {
        if let Some(ignorefile) = stage.ignorefile.as_ref().filter(|path| !path.is_file()) {
            problems.push(format!(
                "the ignore file {} of the stage {:?} does not exist; fix `ignorefile` of that \
                 stage in [package.metadata.{}] of {}",
                ignorefile.display(),
                stage.target,
                declared::TABLE,
                declared.package.name
            ));
        }
    }
    if !declared.context.is_dir() {
        problems.push(format!(
            "build context {} is not a directory; pass --context DIR, or fix `context` in \
             [package.metadata.{}] of {}",
            declared.context.display(),
            declared::TABLE,
            declared.package.name
        ));
    }
    problems
}

/// A path the build reads outside the package's work tree; else a context
/// in a repository of its own inside it. Nothing for a package outside git
/// (the source state reports that).
fn work_tree_problems(declared: &Declared, origins: (bool, bool)) -> Vec<String> {
    let Some(root) = work_tree_of(&declared.workspace_root) else {
        return Vec::new();
    };
    let outside = outside_the_work_tree(declared, &root, origins);
    if !outside.is_empty() {
        return outside;
    }
    outside_the_repository(declared, &root)
        .into_iter()
        .collect()
}

/// The git work tree `path` is in, resolved; `None` outside any.
fn work_tree_of(path: &Path) -> Option<PathBuf> {
    git2::Repository::discover(path)
        .ok()
        .and_then(|repository| repository.workdir().map(Path::to_path_buf))
        .and_then(|directory| directory.canonicalize().ok())
}

/// Every path the build reads that is outside the package's git work tree
/// (`origins`: whether `--file` and `--context` were given).
fn outside_the_work_tree(
    declared: &Declared,
    root: &Path,
    (file_flag, context_flag): (bool, bool),
) -> Vec<String> {
    use work_tree::{BuildPath, Origin};
    let origin = |flag: bool, flag_name, key| match flag {
        true => Origin::Flag(flag_name),
        false => Origin::Key(key),
    };
    let mut paths = vec![
        BuildPath {
            what: "the build context",
            path: &declared.context,
            origin: origin(context_flag, "--context", "context"),
        },
        BuildPath {
            what: "the Containerfile",
            path: &declared.containerfile,
            origin: origin(file_flag, "--file", "containerfile"),
        },
    ];
    paths.extend(declared.stages.iter().filter_map(|stage| {
        Some(BuildPath {
            what: "the ignore file",
            path: stage.ignorefile.as_deref()?,
            origin: Origin::Key("ignorefile"),
        })
    }));
    paths
        .iter()
        .filter_map(|path| work_tree::outside(path, root, &declared.package.name, declared::TABLE))
        .collect()
}

/// A build context inside the work tree but in a git repository of its own
/// there (a submodule, a vendored checkout) would be
/// tagged and labelled from the package's commit, not from the sources it
/// builds: refused.
fn outside_the_repository(declared: &Declared, ours: &Path) -> Option<String> {
    let theirs = work_tree_of(&declared.context)?;
    (ours != theirs).then(|| {
        format!(
            "the build context {} is in the git repository {}, but {} (whose commit and tags \
             name the image) is in {}; run the xtask from {} with the image declared in its \
             Cargo.toml, so the image is tagged and labelled from the sources it is built from",
            declared.context.display(),
            theirs.display(),
            declared.package.name,
            ours.display(),
            theirs.display()
        )
    })
}

/// The platforms the caller asked for (`--platform`), parsed; a problem is
/// added to `problems` instead.
pub fn parse_platforms(text: Option<&str>, problems: &mut Vec<String>) -> Option<Vec<Platform>> {
    let text = text?;
    platform::parse_list(text)
        .map_err(|error| problems.push(format!("--platform {text:?}: {error:#}")))
        .ok()
}

/// An exported `SOURCE_DATE_EPOCH` dates the image instead of the commit
/// (the reproducible-builds convention; podman 5.6 reads it too). `None`
/// when unset or empty.
pub fn source_date_epoch(value: Option<std::ffi::OsString>) -> Result<Option<i64>> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    match text.parse::<i64>() {
        Ok(seconds) if seconds >= 0 => Ok(Some(seconds)),
        _ => bail!(
            "{} is {text:?}, not a number of seconds since 1970; unset it to date the image by \
             its commit, or set it to e.g. $(git log -1 --format=%ct)",
            podman::SOURCE_DATE_EPOCH
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_dates_the_image_when_exported() {
        let read = |value: &str| source_date_epoch(Some(value.into()));
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(read("").unwrap(), None);
        assert_eq!(read("1700000000").unwrap(), Some(1_700_000_000));
        for bad in ["yesterday", "-5", "1.5"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(
                error.contains("SOURCE_DATE_EPOCH") && error.contains("unset it"),
                "{error}"
            );
        }
    }
}
