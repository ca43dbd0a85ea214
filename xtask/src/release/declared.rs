//! The image a package declares in its Cargo metadata, read the way
//! cargo-dist reads `[workspace.metadata.dist]`: from `cargo metadata`, so
//! any crate is released by the same commands, without touching the xtask.
//!
//! ```toml
//! [package.metadata.container-image]
//! name = "acme/hello-service"             # the repository, in every registry
//! registries = ["ghcr.io", "docker.io"]   # pushed to each, read back from each
//! containerfile = "Containerfile"         # relative to this Cargo.toml
//! context = "."                           # relative to this Cargo.toml
//! platforms = ["linux/amd64", "linux/arm64"]
//! recipe = "plain"                        # or "staged", with [[...stages]]
//!                                         # (target, platform, image-arg,
//!                                         # optional ignorefile)
//! targets-arg = "RUST_TARGETS"            # optional: gets "amd64 arm64"
//! cache-repo = true                       # optional: a registry layer cache
//!                                         # beside the image, or "host/path"
//!
//! [package.metadata.container-image.base-images]   # build argument = image
//! BUILDER_IMAGE = "localhost/rc-base/rust-builder:bookworm"
//! RUNTIME_IMAGE = "localhost/rc-base/runtime:bookworm"
//! ```
//!
//! `[workspace.metadata.container-image]` may give `registries`,
//! `platforms`, `cache-repo` and `base-images` for every package of the workspace; a
//! package's own value wins. Flags and their environment variables
//! (`--registry`, `--image`, `--file`, `--context`, `--platform`) win over
//! both.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::{
    engine::podman::BuildArg,
    exec::{Command, Runner},
    platform::Platform,
    release::{labels::Package, reference::Repository},
};

/// The table's name, under `[package.metadata]` and `[workspace.metadata]`.
pub const TABLE: &str = "container-image";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PackageTable {
    name: Option<String>,
    registries: Option<Vec<String>>,
    containerfile: Option<PathBuf>,
    context: Option<PathBuf>,
    platforms: Option<Vec<String>>,
    base_images: Option<BTreeMap<String, String>>,
    recipe: Option<RecipeKind>,
    stages: Option<Vec<Stage>>,
    targets_arg: Option<String>,
    cache_repo: Option<CacheRepoKey>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WorkspaceTable {
    registries: Option<Vec<String>>,
    platforms: Option<Vec<String>>,
    base_images: Option<BTreeMap<String, String>>,
    cache_repo: Option<CacheRepoKey>,
}

/// `cache-repo = true` (beside the image), `false`, or `"host/path"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
enum CacheRepoKey {
    Beside(bool),
    At(String),
}

/// Where the registry layer cache is (see `build::LayerCache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRepo {
    /// `<first registry>/<name>-cache`.
    Beside,
    At(Repository),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RecipeKind {
    Plain,
    Staged,
}

/// A build that runs before the image's own (see `build::plan`): its
/// `target` stage, for the build platform or for every target platform, into
/// a list that the builds after it get in the build argument `image-arg`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Stage {
    pub target: String,
    pub platform: StagePlatform,
    pub image_arg: String,
    /// The context's ignore file for this build (`--ignorefile`), relative to
    /// the Cargo.toml; `None`: the context's own `.containerignore`. A stage
    /// that needs a few files of a large context copies them in one `COPY .`
    /// with an ignore file that admits only them: each `COPY` costs podman a
    /// container and a copy, cached or not (0.15 to 0.25 s here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignorefile: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StagePlatform {
    /// Only the build platform (a stage that cross-compiles for every target).
    Build,
    /// Every platform the image is built for.
    Target,
}

/// A package's image, as declared (paths absolute, values checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The package whose Cargo metadata labels the image.
    pub package: Package,
    /// The workspace the package belongs to (its git repository is the
    /// release's source).
    pub workspace_root: PathBuf,
    pub name: String,
    pub registries: Vec<String>,
    pub containerfile: PathBuf,
    pub context: PathBuf,
    pub platforms: Vec<Platform>,
    /// `--build-arg`s naming the base images, before the user's own.
    pub base_images: Vec<BuildArg>,
    /// Empty for a plain recipe.
    pub stages: Vec<Stage>,
    pub targets_arg: Option<String>,
    pub cache_repo: Option<CacheRepo>,
}

/// What `cargo metadata` says about the workspace: every package that
/// declares an image, and the workspace's defaults.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Workspace {
    pub root: PathBuf,
    defaults: serde_json::Value,
    packages: Vec<PackageEntry>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct PackageEntry {
    package: Package,
    manifest: PathBuf,
    table: serde_json::Value,
}

/// What the workspace read is kept under: `cargo metadata` takes 30 ms, a
/// tenth of a warm build-and-push's own work.
#[derive(serde::Deserialize, serde::Serialize)]
struct Remembered {
    manifests: Vec<PathBuf>,
    described: String,
    workspace: Workspace,
}

impl Workspace {
    /// The workspace of the working directory, as cargo finds it.
    pub fn read(runner: &Runner) -> Result<Workspace> {
        let directory = std::env::current_dir().context("cannot read the working directory")?;
        let ancestors: Vec<PathBuf> = directory
            .ancestors()
            .map(|ancestor| ancestor.join("Cargo.toml"))
            .filter(|manifest| manifest.is_file())
            .collect();
        // One file: the workspace last released from this checkout's xtask.
        let memo = crate::project::Memo::new(
            crate::project::scratch_dir().join("cargo-metadata.json"),
            format!(
                "directory={}\n{}",
                directory.display(),
                crate::project::describe_files(&ancestors)
            ),
            7 * 24 * 60 * 60,
        );
        if let Some(remembered) = memo.load::<Remembered>() {
            if crate::project::describe_files(&remembered.manifests) == remembered.described {
                return Ok(remembered.workspace);
            }
        }
        let json = runner.read(
            &Command::new(crate::project::cargo())
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--no-deps",
                    "--offline",
                ])
                .current_dir(&directory),
        )?;
        let (workspace, manifests) = Workspace::parse(&json)?;
        memo.store(&Remembered {
            described: crate::project::describe_files(&manifests),
            manifests,
            workspace: workspace.clone(),
        });
        Ok(workspace)
    }

    /// Also returns every manifest the answer came from.
    pub fn parse(metadata_json: &str) -> Result<(Workspace, Vec<PathBuf>)> {
        let metadata: serde_json::Value =
            serde_json::from_str(metadata_json).context("cargo metadata printed no JSON")?;
        let root = PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default());
        let mut manifests = vec![root.join("Cargo.toml")];
        let mut packages = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
            manifests.push(manifest.clone());
            let table = &package["metadata"][TABLE];
            if table.is_null() {
                continue;
            }
            let text = |key: &str| package[key].as_str().unwrap_or_default().to_owned();
            packages.push(PackageEntry {
                package: Package {
                    name: text("name"),
                    version: text("version"),
                    description: text("description"),
                    licenses: text("license"),
                    source: text("repository"),
                },
                manifest,
                table: table.clone(),
            });
        }
        Ok((
            Workspace {
                root,
                defaults: metadata["metadata"][TABLE].clone(),
                packages,
            },
            manifests,
        ))
    }

    /// The package to release: `wanted`, else the only one that declares an
    /// image. Every problem of its declaration is listed.
    pub fn declared(&self, wanted: Option<&str>) -> std::result::Result<Declared, Vec<String>> {
        let names: Vec<&str> = self
            .packages
            .iter()
            .map(|entry| entry.package.name.as_str())
            .collect();
        let entry = match wanted {
            Some(wanted) => self
                .packages
                .iter()
                .find(|entry| entry.package.name == wanted)
                .ok_or_else(|| {
                    vec![format!(
                        "no package {wanted} in the workspace at {} declares \
                         [package.metadata.{TABLE}] (those that do: {}); pass one of them to \
                         --package, or add the table to {wanted}'s Cargo.toml",
                        self.root.display(),
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    )]
                })?,
            None => match self.packages.as_slice() {
                [only] => only,
                [] => {
                    return Err(vec![format!(
                        "no package in the workspace at {} declares [package.metadata.{TABLE}]; \
                         add it to the Cargo.toml of the service to release (docs/release.md, \
                         \"Declaring a release\")",
                        self.root.display()
                    )])
                }
                _ => {
                    return Err(vec![format!(
                        "several packages declare an image ({}); choose one with --package NAME \
                         (or RELEASE_PACKAGE)",
                        names.join(", ")
                    )])
                }
            },
        };
        resolve(entry, &self.defaults).map(|mut declared| {
            declared.workspace_root = self.root.clone();
            declared
        })
    }
}

/// The package's table and the workspace's defaults, parsed.
fn tables(
    entry: &PackageEntry,
    defaults: &serde_json::Value,
) -> std::result::Result<(PackageTable, WorkspaceTable), Vec<String>> {
    let manifest = entry.manifest.display();
    let table: PackageTable = serde_json::from_value(entry.table.clone())
        .map_err(|error| vec![format!("{manifest}: [package.metadata.{TABLE}]: {error}")])?;
    let defaults: WorkspaceTable = if defaults.is_null() {
        WorkspaceTable::default()
    } else {
        serde_json::from_value(defaults.clone()).map_err(|error| {
            vec![format!(
                "the workspace's [workspace.metadata.{TABLE}]: {error}"
            )]
        })?
    };
    Ok((table, defaults))
}

/// `name` and `registries` (the package's, else the workspace's), each
/// required.
fn name_and_registries(
    table: &PackageTable,
    defaults: &WorkspaceTable,
    entry: &PackageEntry,
    key: &dyn Fn(&str) -> String,
    problems: &mut Vec<String>,
) -> (String, Vec<String>) {
    let name = table.name.clone().unwrap_or_default();
    if name.is_empty() {
        problems.push(format!(
            "{} is missing: the repository path, e.g. name = \"acme/{}\"",
            key("name"),
            entry.package.name
        ));
    }
    let registries = table
        .registries
        .clone()
        .or(defaults.registries.clone())
        .unwrap_or_default();
    if registries.is_empty() {
        problems.push(format!(
            "{} is missing or empty: where the image goes, e.g. registries = [\"ghcr.io\"]",
            key("registries")
        ));
    }
    (name, registries)
}

fn resolve(
    entry: &PackageEntry,
    defaults: &serde_json::Value,
) -> std::result::Result<Declared, Vec<String>> {
    let manifest = entry.manifest.display();
    let key = |name: &str| format!("{manifest}: [package.metadata.{TABLE}] {name}");
    let (table, defaults) = tables(entry, defaults)?;
    let mut problems = Vec::new();
    let directory = entry.manifest.parent().unwrap_or(Path::new("."));
    let (name, registries) = name_and_registries(&table, &defaults, entry, &key, &mut problems);
    let platforms = platforms_of(
        table
            .platforms
            .or(defaults.platforms)
            .unwrap_or_else(|| vec!["linux/amd64".into(), "linux/arm64".into()]),
        &key("platforms"),
        &mut problems,
    );
    let base_images = base_images_of(
        table
            .base_images
            .or(defaults.base_images)
            .unwrap_or_default(),
        &key("base-images"),
        &mut problems,
    );
    let stages: Vec<Stage> = table
        .stages
        .unwrap_or_default()
        .into_iter()
        .map(|stage| Stage {
            ignorefile: stage
                .ignorefile
                .map(|path| normalize(&directory.join(path))),
            ..stage
        })
        .collect();
    check_recipe(
        table.recipe.unwrap_or(RecipeKind::Plain),
        &stages,
        &key,
        &mut problems,
    );
    if let Some(arg) = table.targets_arg.as_deref().filter(|arg| !is_arg_name(arg)) {
        problems.push(format!(
            "{}: {arg:?} is not a build argument name",
            key("targets-arg")
        ));
    }
    let cache_repo = match table.cache_repo.or(defaults.cache_repo) {
        None | Some(CacheRepoKey::Beside(false)) => None,
        Some(CacheRepoKey::Beside(true)) => Some(CacheRepo::Beside),
        Some(CacheRepoKey::At(text)) => Repository::parse(&text)
            .map_err(|error| problems.push(format!("{}: {error:#}", key("cache-repo"))))
            .ok()
            .map(CacheRepo::At),
    };
    let containerfile = directory.join(
        table
            .containerfile
            .unwrap_or_else(|| "Containerfile".into()),
    );
    let context = directory.join(table.context.unwrap_or_else(|| ".".into()));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Declared {
        package: entry.package.clone(),
        workspace_root: PathBuf::new(),
        name,
        registries,
        containerfile: normalize(&containerfile),
        context: normalize(&context),
        platforms,
        base_images,
        stages,
        targets_arg: table.targets_arg,
        cache_repo,
    })
}

fn platforms_of(texts: Vec<String>, key: &str, problems: &mut Vec<String>) -> Vec<Platform> {
    let mut platforms = Vec::new();
    for text in texts {
        match text.parse::<Platform>() {
            Ok(platform) if !platforms.contains(&platform) => platforms.push(platform),
            Ok(platform) => problems.push(format!("{key}: {platform} is listed twice")),
            Err(error) => problems.push(format!("{key}: {error:#}")),
        }
    }
    platforms
}

fn base_images_of(
    table: BTreeMap<String, String>,
    key: &str,
    problems: &mut Vec<String>,
) -> Vec<BuildArg> {
    let mut base_images = Vec::new();
    for (arg, image) in table {
        if !is_arg_name(&arg) {
            problems.push(format!(
                "{key}: {arg:?} is not a build argument name (letters, digits, _)"
            ));
        } else if image.trim().is_empty() || image.contains(char::is_whitespace) {
            problems.push(format!(
                "{key}: {arg} = {image:?} is not an image reference"
            ));
        } else {
            base_images.push(BuildArg {
                name: arg,
                value: image,
            });
        }
    }
    base_images
}

fn check_recipe(
    recipe: RecipeKind,
    stages: &[Stage],
    key: &impl Fn(&str) -> String,
    problems: &mut Vec<String>,
) {
    match (recipe, stages.is_empty()) {
        (RecipeKind::Plain, false) => problems.push(format!(
            "{}: a plain recipe has no stages; set recipe = \"staged\" or remove [[package.metadata.{TABLE}.stages]]",
            key("recipe")
        )),
        (RecipeKind::Staged, true) => problems.push(format!(
            "{}: a staged recipe needs [[package.metadata.{TABLE}.stages]] (target, platform, image-arg)",
            key("recipe")
        )),
        _ => {}
    }
    for stage in stages {
        let stage_name = !stage.target.is_empty()
            && stage
                .target
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !stage_name {
            problems.push(format!(
                "{}: target {:?} is not a stage name",
                key("stages"),
                stage.target
            ));
        }
        if !is_arg_name(&stage.image_arg) {
            problems.push(format!(
                "{}: image-arg {:?} is not a build argument name",
                key("stages"),
                stage.image_arg
            ));
        }
    }
}

fn is_arg_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// `a/b/../c` as `a/c`, without touching the filesystem (the path may not
/// exist; that is reported later, with the fix).
pub fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if normal.file_name().is_some() => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(table: &str, defaults: &str) -> String {
        format!(
            r#"{{"workspace_root":"/w","metadata":{defaults},"packages":[
            {{"name":"xtask","version":"0.1.0","manifest_path":"/w/xtask/Cargo.toml","metadata":null}},
            {{"name":"svc","version":"1.2.0","description":"A service","license":"MIT",
              "repository":"https://example.com/svc","manifest_path":"/w/svc/Cargo.toml",
              "metadata":{{"container-image":{table}}}}}]}}"#
        )
    }

    fn declared(table: &str, defaults: &str) -> std::result::Result<Declared, Vec<String>> {
        let (workspace, manifests) = Workspace::parse(&metadata(table, defaults)).unwrap();
        assert_eq!(manifests.len(), 3, "{manifests:?}");
        workspace.declared(None)
    }

    #[test]
    fn a_declaration_gives_every_part_of_the_image() {
        let image = declared(
            r#"{"name":"acme/svc","registries":["ghcr.io","docker.io"],
                "containerfile":"../containers/svc/Containerfile","context":"..",
                "platforms":["linux/arm64"],"recipe":"staged","targets-arg":"RUST_TARGETS",
                "cache-repo":"quay.io/acme/svc-layers",
                "base-images":{"RUNTIME_IMAGE":"localhost/rc-base/runtime:bookworm"},
                "stages":[{"target":"deps","platform":"build","image-arg":"DEPS_IMAGE",
                            "ignorefile":"../containers/svc/deps.containerignore"},
                          {"target":"lib","platform":"target","image-arg":"LIB_IMAGE"}]}"#,
            "null",
        )
        .unwrap();
        assert_eq!(image.package.name, "svc");
        assert_eq!(image.package.licenses, "MIT");
        assert_eq!(image.name, "acme/svc");
        assert_eq!(image.registries, ["ghcr.io", "docker.io"]);
        assert_eq!(
            image.containerfile,
            PathBuf::from("/w/containers/svc/Containerfile")
        );
        assert_eq!(image.context, PathBuf::from("/w"));
        assert_eq!(image.platforms, [Platform::LINUX_ARM64]);
        assert_eq!(image.base_images[0].name, "RUNTIME_IMAGE");
        assert_eq!(image.stages[0].platform, StagePlatform::Build);
        // Relative to the Cargo.toml, as the Containerfile is.
        assert_eq!(
            image.stages[0].ignorefile,
            Some(PathBuf::from("/w/containers/svc/deps.containerignore"))
        );
        assert_eq!(image.stages[1].ignorefile, None);
        assert_eq!(image.targets_arg.as_deref(), Some("RUST_TARGETS"));
        assert_eq!(
            image.cache_repo,
            Some(CacheRepo::At(
                Repository::new("quay.io", "acme/svc-layers").unwrap()
            ))
        );
    }

    #[test]
    fn the_workspace_gives_defaults_and_a_package_overrides_them() {
        let defaults =
            r#"{"container-image":{"registries":["quay.io"],"platforms":["linux/amd64"]}}"#;
        let image = declared(r#"{"name":"acme/svc"}"#, defaults).unwrap();
        assert_eq!(image.registries, ["quay.io"]);
        assert_eq!(image.platforms, [Platform::LINUX_AMD64]);
        assert_eq!(image.containerfile, PathBuf::from("/w/svc/Containerfile"));
        let image = declared(r#"{"name":"acme/svc","registries":["ghcr.io"]}"#, defaults).unwrap();
        assert_eq!(image.registries, ["ghcr.io"]);
        assert_eq!(image.cache_repo, None, "no cache unless declared");
        let cached = r#"{"container-image":{"registries":["quay.io"],"cache-repo":true}}"#;
        let image = declared(r#"{"name":"acme/svc"}"#, cached).unwrap();
        assert_eq!(image.cache_repo, Some(CacheRepo::Beside));
        let image = declared(r#"{"name":"acme/svc","cache-repo":false}"#, cached).unwrap();
        assert_eq!(
            image.cache_repo, None,
            "a package turns the workspace's off"
        );
    }

    #[test]
    fn bad_metadata_names_each_key_at_once() {
        let problems = declared(
            r#"{"platforms":["linux/riscv64"],"recipe":"staged",
                "base-images":{"1X":"a"},"targets-arg":"A-B","cache-repo":"ghcr.io/a/b:c"}"#,
            "null",
        )
        .unwrap_err();
        let all = problems.join("\n");
        for key in [
            "] name is missing",
            "] registries",
            "] platforms",
            "] base-images",
            "] recipe",
            "] targets-arg",
            "] cache-repo",
        ] {
            assert!(all.contains(key), "{key} in:\n{all}");
        }
        assert!(all.contains("/w/svc/Cargo.toml"), "{all}");
        // A misspelt key is named, with the keys that exist.
        let problems = declared(r#"{"name":"a/b","registry":["ghcr.io"]}"#, "null").unwrap_err();
        assert!(
            problems[0].contains("unknown field `registry`") && problems[0].contains("registries"),
            "{problems:?}"
        );
        let problems = declared(
            r#"{"name":"a/b","registries":["r"],"stages":[{"target":"x","platform":"host","image-arg":"X"}],"recipe":"staged"}"#,
            "null",
        )
        .unwrap_err();
        assert!(
            problems[0].contains("unknown variant `host`"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_package_is_chosen_by_name_or_is_the_only_one() {
        let (workspace, _) =
            Workspace::parse(&metadata(r#"{"name":"a/b","registries":["r"]}"#, "null")).unwrap();
        assert!(workspace.declared(Some("svc")).is_ok());
        let problems = workspace.declared(Some("xtask")).unwrap_err();
        assert!(problems[0].contains("those that do: svc"), "{problems:?}");
        let (none, _) = Workspace::parse(r#"{"workspace_root":"/w","packages":[]}"#).unwrap();
        assert!(none.declared(None).unwrap_err()[0].contains("Declaring a release"));
    }

    #[test]
    fn rc_web_declares_its_own_staged_image() {
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../rc-web/Cargo.toml"),
        )
        .unwrap();
        for needle in [
            "[package.metadata.container-image]",
            "recipe = \"staged\"",
            "targets-arg = \"RUST_TARGETS\"",
        ] {
            assert!(manifest.contains(needle), "{needle}");
        }
    }
}
