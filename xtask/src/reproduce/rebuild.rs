//! The rebuild: the recorded commit checked out in a directory of its own,
//! built by this xtask's `build-and-push` into a private storage and pushed
//! to a private registry on 127.0.0.1, as the release was pushed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{compare, recorded::Recorded, Published};
use crate::{
    engine::{podman, scratch_storage::FreshStorage, Destination},
    exec::{Command, Runner},
    platform::{self, Platform},
    project::TemporaryDirectory,
    registry::{self, loopback::LoopbackRegistry, RemoteIndex},
};

/// What the rebuild made; its storage and registry live as long as it.
pub struct Rebuilt<'a> {
    pub index: RemoteIndex,
    /// Where each of the project's base images came from.
    pub bases_taken: Vec<BaseTaken>,
    /// Each base image the release recorded, as the rebuild had it.
    pub base_image_ids: Vec<RebuiltBase>,
    repository: String,
    destination: Destination,
    _storage: FreshStorage<'a>,
    _registry: LoopbackRegistry,
    scratch: TemporaryDirectory,
}

/// A base image as the rebuild had it.
pub struct RebuiltBase {
    pub platform: String,
    pub argument: String,
    pub id: String,
}

/// Where the rebuild took one of the project's base images from.
#[derive(Debug, Clone, Serialize)]
pub struct BaseTaken {
    /// The architecture's image (`localhost/rc-base/runtime:bookworm-arm64`).
    pub image: String,
    pub platform: String,
    /// The store's reference it was taken from; `None`: made from its
    /// definition, for the reason `from` gives.
    pub store: Option<String>,
    pub from: String,
}

/// Checks the commit out, builds it in a private storage and pushes it to
/// a private registry; returns what the registry holds.
pub fn rebuild<'a>(
    runner: &'a Runner,
    published: &Published,
    recorded: &Recorded,
) -> Result<Rebuilt<'a>> {
    let scratch = TemporaryDirectory::create("rc-xtask-reproduce")?;
    let workspace = check_out(runner, &recorded.commit, scratch.path())?;
    let storage = FreshStorage::new(runner, "reproduce")?;
    let registry = LoopbackRegistry::start(&scratch.path().join("registry"), None)
        .map_err(|error| anyhow::anyhow!("cannot start a registry on 127.0.0.1: {error}"))?;
    let bases_taken = seed_base_images(runner, &storage, recorded, published);
    let name = published
        .repository
        .split_once('/')
        .map_or(published.repository.as_str(), |(_, name)| name);
    let platforms: Vec<Platform> = published
        .entries
        .iter()
        .map(|(platform, _)| *platform)
        .collect();
    let child = storage.applied(build_command(
        runner,
        &workspace,
        recorded,
        &registry.host(),
        name,
        &platforms,
        published.destination.format,
    )?);
    eprintln!(
        "reproduce: rebuilding commit {} in a private storage ({}), pushing to {}",
        recorded.commit,
        platform::join(&platforms),
        registry.host()
    );
    runner
        .run_prefixed(&child, "[rebuild] ")
        .context("the rebuild failed (its output is above)")?;
    let destination = Destination {
        registry: registry.host(),
        tls_verify: false,
        format: published.destination.format,
        authfile: None,
        skopeo_runtime_dir: None,
    };
    let repository = format!("{}/{name}", registry.host());
    let index = registry::verify_remote(
        runner,
        &destination,
        &format!("{repository}:{}", recorded.tag),
        &platforms,
    )?;
    let base_image_ids = recorded
        .base_images
        .iter()
        .filter_map(|base| {
            let id = runner
                .read(&storage.applied(podman::image_id(base.base.taken())))
                .ok()?;
            Some(RebuiltBase {
                platform: base.platform.clone(),
                argument: base.base.argument.clone(),
                id: podman::image_id_of(&id),
            })
        })
        .collect();
    Ok(Rebuilt {
        index,
        bases_taken,
        base_image_ids,
        repository,
        destination,
        _storage: storage,
        _registry: registry,
        scratch,
    })
}

/// Puts into the private storage each of the project's base images the
/// release recorded that its store still keeps as the very image (the same
/// image ID: the digest of its config, which names every layer's content;
/// for the image's last stage's base, also the same manifest: see
/// [`take_from_store`]); the rebuild makes the others from their
/// definitions, as a machine without them does. Says which, and why.
fn seed_base_images(
    runner: &Runner,
    storage: &FreshStorage,
    recorded: &Recorded,
    published: &Published,
) -> Vec<BaseTaken> {
    let mut seen = std::collections::BTreeSet::new();
    let mut taken = Vec::new();
    for base in &recorded.base_images {
        // Not the project's: the build pulls it by its name, as the release's did.
        let Some(image) = base.base.resolved.as_deref() else {
            continue;
        };
        // The Rust builder is in every platform's provenance.
        if !seen.insert(image) {
            continue;
        }
        let taken_from = match (&base.base.kept, &base.base.id) {
            (None, _) => Err("the release names no store that keeps it".to_owned()),
            (Some(kept), None) => Err(format!(
                "the release recorded no image ID to check {kept} against"
            )),
            (Some(kept), Some(id)) => {
                // The manifest digest matters for the base the image names
                // (its last stage's); another stage's base (the Rust
                // builder) gives the same files whatever its manifest.
                let last_stage = published.is_last_stage_base(&base.platform, image);
                let wanted = Wanted {
                    id,
                    digest: base.base.digest.as_deref().filter(|_| last_stage),
                };
                take_from_store(runner, storage, kept, &wanted, image, published).map(|()| kept)
            }
        };
        let (store, from) = match taken_from {
            Ok(kept) => (
                Some(kept.clone()),
                format!("taken from {kept}, the very image the release was built on"),
            ),
            Err(why) => (None, format!("{why}; made from its definition")),
        };
        eprintln!("reproduce: base image {image} ({}): {from}", base.platform);
        taken.push(BaseTaken {
            image: image.to_owned(),
            platform: base.platform.clone(),
            store,
            from,
        });
    }
    taken
}

/// What a base image taken from the store must be: the recorded image
/// (`id`), and, for the last stage's base, under the manifest digest the
/// release's storage had it by (`digest`).
struct Wanted<'a> {
    id: &'a str,
    digest: Option<&'a str>,
}

/// Pulls `kept` into `storage` and names it `image` when it is `wanted`;
/// else says what it is.
///
/// Both matter: buildah names the last stage's base in the image by a
/// manifest digest (`org.opencontainers.image.base.digest`), and a base
/// made on a machine has another manifest than the same image (the same
/// ID) pushed to the store and pulled from it. A release built on a base
/// its machine made is rebuilt on one made from the definition, as it was.
fn take_from_store(
    runner: &Runner,
    storage: &FreshStorage,
    kept: &str,
    wanted: &Wanted,
    image: &str,
    published: &Published,
) -> std::result::Result<(), String> {
    let destination = Destination {
        registry: kept.split('/').next().unwrap_or_default().to_owned(),
        tls_verify: published.destination.tls_verify,
        format: crate::flags::Format::Oci,
        authfile: None,
        skopeo_runtime_dir: None,
    };
    // `pull --quiet` answers with the image's ID.
    let answer = runner
        .read(&storage.applied(registry::pull_image_command(&destination, kept)))
        .map_err(|error| {
            format!(
                "the store has no {kept} ({})",
                crate::exec::last_line(&error)
            )
        })?;
    let pulled = podman::image_id_of(answer.lines().last().unwrap_or_default());
    if pulled != wanted.id {
        return Err(format!(
            "{kept} is now image {pulled}, not the recorded {} (the store's tag was replaced)",
            wanted.id
        ));
    }
    // In a storage of its own, the image has the one manifest it was
    // pulled with.
    let pulled_digest = runner
        .read(&storage.applied(podman::image_digest(kept)))
        .map(|answer| answer.trim().to_owned())
        .unwrap_or_default();
    if let Some(digest) = wanted.digest.filter(|digest| *digest != pulled_digest) {
        return Err(format!(
            "{kept} is the recorded image, but the release's build had it as manifest \
             {digest} (made on the machine that built it), not the store's {pulled_digest}"
        ));
    }
    let named = runner
        .run_quietly(&storage.applied(podman::tag_all(kept, &[image])))
        .unwrap_or(false)
        && runner
            .run_quietly(&storage.applied(podman::untag(kept)))
            .unwrap_or(false);
    if named {
        Ok(())
    } else {
        Err(format!("cannot name {kept} {image} in the private storage"))
    }
}

impl Rebuilt<'_> {
    /// Why `platform`'s published image (`ours`) and the rebuilt one
    /// (`theirs`) differ: both copied to `dir:` layouts and compared.
    pub fn difference(
        &self,
        runner: &Runner,
        published: &Published,
        platform: Platform,
        ours: &str,
        theirs: &str,
    ) -> Result<compare::ImageDifference> {
        let stem = platform.to_string().replace('/', "-");
        let (left, right) = (
            self.scratch.path().join(format!("published-{stem}")),
            self.scratch.path().join(format!("rebuilt-{stem}")),
        );
        runner.run(&registry::copy_to_dir_command(
            &published.destination,
            &format!("{}@{ours}", published.repository),
            &left,
        ))?;
        runner.run(&registry::copy_to_dir_command(
            &self.destination,
            &format!("{}@{theirs}", self.repository),
            &right,
        ))?;
        compare::compare(&left, &right)
    }
}

/// The commit, checked out in `scratch/source` (a clone of the repository
/// this runs in, fetched from `origin` first if the commit is not there);
/// returns the workspace's directory in it.
fn check_out(runner: &Runner, commit: &str, scratch: &Path) -> Result<PathBuf> {
    let here = std::env::current_dir()?;
    let repository = git2::Repository::discover(&here).with_context(|| {
        format!(
            "reproduce runs in a clone of the release's source; {} is not in a git repository",
            here.display()
        )
    })?;
    let workdir = repository
        .workdir()
        .context("the repository has no work tree")?
        .to_owned();
    let oid =
        git2::Oid::from_str(commit).with_context(|| format!("{commit} is not a commit ID"))?;
    if repository.find_commit(oid).is_err() {
        eprintln!("reproduce: commit {commit} is not here; fetching it from origin");
        let _ = runner.run(
            &Command::new("git")
                .args(["fetch", "--quiet", "origin", commit])
                .current_dir(&workdir),
        );
    }
    if repository.find_commit(oid).is_err() {
        return Err(crate::BadInput(vec![format!(
            "commit {commit}, which the release names, is neither in {} nor in its origin; run \
             reproduce in a clone of the repository the release was built from",
            workdir.display()
        )])
        .into());
    }
    let source = scratch.join("source");
    let clone = git2::Repository::clone(&workdir.to_string_lossy(), &source)
        .context("cannot clone the repository")?;
    if clone.find_commit(oid).is_err() {
        // Not reachable from a branch or tag (fetched by ID): by its ID.
        clone
            .find_remote("origin")?
            .fetch(&[commit], None, None)
            .with_context(|| format!("cannot take commit {commit} into the clone"))?;
    }
    clone.set_head_detached(oid)?;
    clone.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    let head = clone.head()?.peel_to_commit()?;
    eprintln!(
        "reproduce: commit {} (committed {}) checked out in {}",
        head.id(),
        crate::release::git::rfc3339_utc(head.committer().when().seconds()),
        source.display()
    );
    let inside = here.strip_prefix(&workdir).unwrap_or(Path::new(""));
    Ok(source.join(inside))
}

/// This xtask's `build-and-push` of the recorded inputs: every platform of
/// the list, no registry cache (the release's layers are not reused), not
/// signed, in the release's format.
fn build_command(
    runner: &Runner,
    workspace: &Path,
    recorded: &Recorded,
    registry: &str,
    name: &str,
    platforms: &[Platform],
    format: crate::flags::Format,
) -> Result<Command> {
    let program = std::env::current_exe().context("cannot find this xtask's own program")?;
    let mut command = Command::new(program.to_string_lossy())
        .args(["build-and-push", "--registry", registry, "--image", name])
        .args([
            "--tag",
            &recorded.tag,
            "--no-latest",
            "--no-cache",
            "--no-sign",
        ])
        .args(["--tls-verify", "false", "--format", format.podman_name()])
        .args(["--platform", &platform::join(platforms)])
        .current_dir(workspace);
    if let Some(package) = &recorded.package {
        command = command.args(["--package", package]);
    }
    let root = cargo_workspace_root(runner, workspace)?;
    if let Some(file) = &recorded.containerfile {
        command = command.arg("--file").arg(root.join(file).to_string_lossy());
    }
    if let Some(context) = &recorded.context {
        command = command
            .arg("--context")
            .arg(root.join(context).to_string_lossy());
    }
    for argument in &recorded.build_args {
        command = command.args(["--build-arg", argument]);
    }
    Ok(command)
}

/// The Cargo workspace `directory` is in (provenance paths are relative to it).
fn cargo_workspace_root(runner: &Runner, directory: &Path) -> Result<PathBuf> {
    let answer = runner.read(
        &Command::new(crate::project::cargo())
            .args(["locate-project", "--workspace", "--message-format", "plain"])
            .current_dir(directory),
    )?;
    Path::new(answer.trim())
        .parent()
        .map(Path::to_owned)
        .context("cargo located no workspace")
}
