//! Base images made from the Debian archive, so nothing needs a registry.
//!
//! A recipe (`containers/base/*.json`) says how mmdebstrap makes a root
//! filesystem; the image is imported per architecture and gathered into a
//! manifest list. Every image carries the fingerprint of its definition in the
//! label [`DEFINITION_LABEL`]; an image whose label matches is not rebuilt.
//!
//! With a [`Store`] (the registry layer cache's repository), a machine that
//! lacks an image pulls it from there, tagged with its fingerprint, and one
//! that had to build it pushes it there: a fresh CI runner makes none of them
//! again, and its builds start from the very images the cache's layers were
//! built on (the cache's keys hold the base's history, name included).

mod recipe;
mod store;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{
    engine::podman,
    engine::Destination,
    exec::{Runner, Step},
    platform::{Arch, Platform},
    project, registry,
};

pub use recipe::Recipe;
pub use store::Store;

pub const DEFINITION_LABEL: &str = "org.rc-release.definition";

/// Reads an image's definition label; `None` when the image does not exist.
fn definition_of(runner: &Runner, image: &str) -> Result<Option<String>> {
    if !runner.succeeds(&podman::image_exists(image))? {
        return Ok(None);
    }
    let config = podman::ImageConfig::parse(&runner.read(&podman::image_inspect(image))?)?;
    Ok(config.label(DEFINITION_LABEL).map(str::to_owned))
}

fn recipes() -> Result<(Recipe, Recipe)> {
    Ok((
        Recipe::load(&project::own_file(project::RUNTIME_RECIPE)?)?,
        Recipe::load(&project::own_file(project::DEBIAN_RECIPE)?)?,
    ))
}

/// Every base image (not their lists), and one fingerprint of all their
/// definitions: the name of an archive of them that stays valid while it is
/// the same.
pub fn images_and_fingerprint(build_platform: Platform) -> Result<(Vec<String>, String)> {
    let (runtime, debian) = recipes()?;
    let mut images: Vec<String> = [&runtime, &debian]
        .iter()
        .flat_map(|recipe| {
            recipe
                .architectures(build_platform)
                .into_iter()
                .map(|arch| recipe.image_for(arch))
        })
        .collect();
    images.push(project::BUILDER_IMAGE.to_owned());
    let builder = builder_definition(&debian)?;
    let fingerprint = project::fingerprint(&[
        runtime.fingerprint.as_bytes(),
        debian.fingerprint.as_bytes(),
        builder.as_bytes(),
    ]);
    Ok((images, fingerprint))
}

/// Writes every base image, up to date, into `archive` (`podman save`), for
/// [`import`] into another storage: another user's (rootless podman), or
/// another podman's, without building them again.
pub fn export(runner: &Runner, build_platform: Platform, archive: &Path) -> Result<()> {
    ensure(runner, build_platform, false, None)?;
    let (images, _) = images_and_fingerprint(build_platform)?;
    if let Some(directory) = archive.parent() {
        std::fs::create_dir_all(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
    }
    runner
        .run(&podman::save_all(archive, &images))
        .with_context(|| format!("cannot write the base images to {}", archive.display()))
}

/// Loads an archive [`export`] wrote when the base images are not up to
/// date here, then makes sure of them (their lists are made here; an
/// archive of other definitions leaves them to be built).
pub fn import(runner: &Runner, build_platform: Platform, archive: &Path) -> Result<()> {
    let (runtime, debian) = recipes()?;
    if all_up_to_date(runner, &runtime, &debian, build_platform, Needed::ALL)? {
        eprintln!("base-images: every base image is up to date; nothing to import");
        return Ok(());
    }
    eprintln!("base-images: loading {}", archive.display());
    runner
        .run(&podman::load(archive))
        .with_context(|| format!("cannot load the base images from {}", archive.display()))?;
    ensure(runner, build_platform, false, None)
}

/// Which of the base images a build needs (the Rust builder is built on
/// the Debian base, so it needs that too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    pub runtime: bool,
    pub debian: bool,
    pub builder: bool,
}

impl Needed {
    pub const ALL: Needed = Needed {
        runtime: true,
        debian: true,
        builder: true,
    };
    pub const NONE: Needed = Needed {
        runtime: false,
        debian: false,
        builder: false,
    };

    /// Those of the project's base images that `images` name (a build's
    /// base-image arguments): a build that names only the runtime base
    /// does not wait for the Rust builder, nor a fresh storage load it.
    pub fn named<'a>(images: impl IntoIterator<Item = &'a str>) -> Result<Needed> {
        let (runtime, debian) = recipes()?;
        let mut needed = Needed::NONE;
        for image in images {
            needed.runtime |= image == runtime.name;
            needed.debian |= image == debian.name;
            needed.builder |= image == project::BUILDER_IMAGE;
        }
        needed.debian |= needed.builder;
        Ok(needed)
    }

    /// The Debian base: named, or under the builder.
    fn debian_chain(self) -> bool {
        self.debian || self.builder
    }
}

/// Makes sure every base image exists and matches its definition: taken
/// from `store` when it has it, else built (and then kept in `store`).
pub fn ensure(
    runner: &Runner,
    build_platform: Platform,
    rebuild: bool,
    store: Option<&Store>,
) -> Result<()> {
    ensure_only(runner, build_platform, Needed::ALL, rebuild, store)
}

/// [`ensure`] for the base images `needed` names.
pub fn ensure_only(
    runner: &Runner,
    build_platform: Platform,
    needed: Needed,
    rebuild: bool,
    store: Option<&Store>,
) -> Result<()> {
    if needed == Needed::NONE {
        return Ok(());
    }
    let (runtime, debian) = recipes()?;
    let wanted = wanted(&runtime, &debian, build_platform, needed)?;
    if !rebuild && all_up_to_date(runner, &runtime, &debian, build_platform, needed)? {
        eprintln!("base-images: every base image is up to date");
        if let Some(store) = store {
            store.keep(runner, &store.lacking(runner, &wanted));
        }
        return Ok(());
    }
    let to_keep = match store {
        Some(store) if !rebuild => store.fetch(runner, &wanted)?,
        Some(_) => wanted.iter().collect(),
        None => Vec::new(),
    };
    build_side_by_side(runner, &runtime, &debian, build_platform, needed, rebuild)?;
    if let Some(store) = store {
        store.keep(runner, &to_keep);
    }
    Ok(())
}

/// The runtime base (mmdebstrap of two architectures: the network and the
/// disk) and the chain Debian base, then Rust builder (apt, then a compile:
/// the CPU), at the same time: neither needs the other. Each one's output
/// lines carry its [`Chain::prefix`]. Both run to their end; every failure
/// is reported.
fn build_side_by_side(
    runner: &Runner,
    runtime: &Recipe,
    debian: &Recipe,
    build_platform: Platform,
    needed: Needed,
    rebuild: bool,
) -> Result<()> {
    let (runtime_result, builder_result) = std::thread::scope(|scope| {
        let runtime_job = scope.spawn(|| {
            if !needed.runtime {
                return Ok(());
            }
            ensure_rootfs_image(
                runner,
                runtime,
                build_platform,
                rebuild,
                Chain::Runtime.prefix(),
            )
        });
        let builder_result = if needed.debian_chain() {
            ensure_rootfs_image(
                runner,
                debian,
                build_platform,
                rebuild,
                Chain::Builder.prefix(),
            )
            .and_then(|()| {
                if needed.builder {
                    ensure_builder(runner, debian, rebuild, Chain::Builder.prefix())
                } else {
                    Ok(())
                }
            })
        } else {
            Ok(())
        };
        let runtime_result = runtime_job
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the runtime base's thread panicked")));
        (runtime_result, builder_result)
    });
    both(runtime_result, builder_result)
}

/// One result for two jobs that ran side by side: each failure is told.
fn both(first: Result<()>, second: Result<()>) -> Result<()> {
    match (first, second) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(error), Ok(())) | (Ok(()), Err(error)) => Err(error),
        (Err(first), Err(second)) => Err(second.context(format!("{first:#}; and"))),
    }
}

/// The two chains [`build_side_by_side`] runs, each with its line prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// The runtime base, for every target.
    Runtime,
    /// The Debian base, then the Rust builder on it.
    Builder,
}

impl Chain {
    fn prefix(self) -> &'static str {
        match self {
            Chain::Runtime => "[runtime] ",
            Chain::Builder => "[builder] ",
        }
    }
}

/// One base image (not a list) and the definition it must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub image: String,
    pub arch: Arch,
    pub definition: String,
}

/// The one image a build for `platform` takes from `name` (a base image
/// as a build argument names it) when it is one of the project's: the
/// architecture's image of a base's list, or the Rust builder (which runs
/// on the build platform). `None` for any other image.
pub fn project_image(
    name: &str,
    platform: Platform,
    build_platform: Platform,
) -> Result<Option<Wanted>> {
    let (runtime, debian) = recipes()?;
    if name == project::BUILDER_IMAGE {
        return Ok(Some(Wanted {
            image: name.to_owned(),
            arch: build_platform.arch,
            definition: builder_definition(&debian)?,
        }));
    }
    Ok([runtime, debian]
        .into_iter()
        .find(|recipe| recipe.name == name)
        .map(|recipe| Wanted {
            image: recipe.image_for(platform.arch),
            arch: platform.arch,
            definition: recipe.fingerprint.clone(),
        }))
}

/// The base images `needed` names, one per architecture, the builder last.
fn wanted(
    runtime: &Recipe,
    debian: &Recipe,
    build_platform: Platform,
    needed: Needed,
) -> Result<Vec<Wanted>> {
    let recipes = [(runtime, needed.runtime), (debian, needed.debian_chain())];
    let mut wanted: Vec<Wanted> = recipes
        .iter()
        .filter(|(_, needed)| *needed)
        .flat_map(|(recipe, _)| {
            recipe
                .architectures(build_platform)
                .into_iter()
                .map(|arch| Wanted {
                    image: recipe.image_for(arch),
                    arch,
                    definition: recipe.fingerprint.clone(),
                })
        })
        .collect();
    if needed.builder {
        wanted.push(Wanted {
            image: project::BUILDER_IMAGE.to_owned(),
            arch: build_platform.arch,
            definition: builder_definition(debian)?,
        });
    }
    Ok(wanted)
}

/// The usual case, asked in three podman calls: one `podman image inspect`
/// for every image and one `manifest inspect` per list, the three at the
/// same time (0.09 s; 0.13 s one after the other, where a dozen calls took
/// 0.45 s, and a dozen side by side were slower still, on two cores).
/// Anything missing or different answers false, and [`ensure`] goes
/// through it image by image.
fn all_up_to_date(
    runner: &Runner,
    runtime: &Recipe,
    debian: &Recipe,
    build_platform: Platform,
    needed: Needed,
) -> Result<bool> {
    let recipes: Vec<&Recipe> = [(runtime, needed.runtime), (debian, needed.debian_chain())]
        .into_iter()
        .filter_map(|(recipe, needed)| needed.then_some(recipe))
        .collect();
    let wanted = wanted(runtime, debian, build_platform, needed)?;
    let references: Vec<&str> = wanted.iter().map(|wanted| wanted.image.as_str()).collect();
    let (images_match, lists_match) = std::thread::scope(|scope| {
        let lists: Vec<_> = recipes
            .iter()
            .map(|recipe| {
                scope.spawn(move || {
                    list_is_current(runner, recipe, &recipe.architectures(build_platform))
                })
            })
            .collect();
        let images_match = runner
            .read(&podman::image_inspect_all(&references))
            .ok()
            .and_then(|json| podman::ImageConfig::parse_all(&json).ok())
            .is_some_and(|configs| {
                configs.len() == wanted.len()
                    && configs.iter().zip(&wanted).all(|(config, wanted)| {
                        config.label(DEFINITION_LABEL) == Some(wanted.definition.as_str())
                    })
            });
        let lists_match = lists.into_iter().all(|list| list.join().unwrap_or(false));
        (images_match, lists_match)
    });
    Ok(images_match && lists_match)
}

/// Makes sure of one recipe's images and list (used for the test lanes'
/// environments, which are made the way the base images are); returns it.
pub fn ensure_recipe(runner: &Runner, path: &Path, build_platform: Platform) -> Result<Recipe> {
    let recipe = Recipe::load(path)?;
    ensure_rootfs_image(runner, &recipe, build_platform, false, "")?;
    Ok(recipe)
}

fn ensure_rootfs_image(
    runner: &Runner,
    recipe: &Recipe,
    build_platform: Platform,
    rebuild: bool,
    prefix: &str,
) -> Result<()> {
    let architectures = recipe.architectures(build_platform);
    let mut built_any = false;
    for &arch in &architectures {
        let image = recipe.image_for(arch);
        if !rebuild
            && definition_of(runner, &image)?.as_deref() == Some(recipe.fingerprint.as_str())
        {
            eprintln!("{prefix}base-images: {image} is up to date");
            continue;
        }
        eprintln!(
            "{prefix}base-images: building {image} from the Debian archive: {}",
            recipe.description
        );
        let scratch = project::scratch_dir();
        let tarball = scratch.join(format!("{}.tar", sanitize(&image)));
        runner.execute(rootfs_steps(
            recipe, arch, &image, &scratch, &tarball, prefix,
        ))?;
        built_any = true;
    }
    let list_matches = !built_any && list_is_current(runner, recipe, &architectures);
    if list_matches {
        return Ok(());
    }
    if runner.succeeds(&podman::manifest_exists(&recipe.name))? {
        runner.run_prefixed(&podman::manifest_remove(&recipe.name), prefix)?;
    } else if runner.succeeds(&podman::image_exists(&recipe.name))? {
        // A plain image under the list's name (loaded or tagged by hand)
        // makes `manifest create` fail ("that name is already in use"). It
        // loses the name, not its data.
        eprintln!(
            "{prefix}base-images: {0} names a plain image, not a list; taking the name from it \
             (the image stays, under its ID and any other names)",
            recipe.name
        );
        runner.run_prefixed(&podman::untag(&recipe.name), prefix)?;
    }
    runner.run_prefixed(&podman::manifest_create(&recipe.name), prefix)?;
    for &arch in &architectures {
        runner.run_prefixed(
            &podman::manifest_add(&recipe.name, &recipe.image_for(arch)),
            prefix,
        )?;
    }
    Ok(())
}

/// An empty directory beside `tarball`: the context of a dated copy.
fn empty_context(tarball: &Path) -> PathBuf {
    tarball
        .parent()
        .unwrap_or(Path::new("/"))
        .join("empty-context")
}

/// Makes `image` (`arch`'s of `recipe`) from the Debian archive: a root
/// file system by mmdebstrap, imported; its tarball goes either way.
fn rootfs_steps<'a>(
    recipe: &'a Recipe,
    arch: Arch,
    image: &'a str,
    scratch: &'a Path,
    tarball: &'a Path,
    prefix: &str,
) -> Vec<Step<'a>> {
    let build = vec![
        Step::run(recipe.mmdebstrap(arch, tarball)),
        Step::Uninterrupted(
            recipe
                .import_commands(arch, tarball)
                .into_iter()
                .map(Step::run)
                .collect(),
        ),
        Step::work(format!("{} is removed", tarball.display()), move |_, _| {
            remove_file_if_present(tarball);
            Ok(())
        }),
    ];
    let steps = vec![
        Step::work("mmdebstrap is installed", move |_, _| {
            if which::which("mmdebstrap").is_err() {
                bail!(
                    "{image} is missing or out of date, and mmdebstrap (which makes it from the \
                     Debian archive, on this machine) is not installed: run `sudo cargo xtask \
                     setup` (Debian, Ubuntu), or bring the base images from a machine that has \
                     them: `cargo xtask base-images --export base.tar` there, `cargo xtask \
                     base-images --import base.tar` here (also through a remote podman)"
                );
            }
            Ok(())
        }),
        Step::work(format!("{} is made", scratch.display()), move |_, _| {
            std::fs::create_dir_all(empty_context(tarball))
                .with_context(|| format!("cannot create {}", scratch.display()))
        }),
        Step::fallback(
            build,
            format!("{} is removed", tarball.display()),
            move |error| {
                remove_file_if_present(tarball);
                Err(error.context(format!("cannot build base image {image}")))
            },
            Vec::new(),
        ),
    ];
    match prefix.trim().trim_start_matches('[').trim_end_matches(']') {
        "" => steps,
        name => vec![Step::named(name.to_owned(), steps)],
    }
}

/// Whether `recipe`'s list holds exactly its images, each as it is now: an
/// image made again (or loaded from an archive) has another digest, and a
/// list still naming the old one would give builds the old base.
fn list_is_current(runner: &Runner, recipe: &Recipe, architectures: &[Arch]) -> bool {
    let Ok(list) = crate::engine::local_list::read(runner, &recipe.name) else {
        return false;
    };
    holds_exactly(&list, architectures)
        && architectures.iter().all(|&arch| {
            let current = runner
                .read(&podman::image_digest(&recipe.image_for(arch)))
                .map(|digest| digest.trim().to_owned());
            list.entries_for(Platform::linux(arch))
                .first()
                .is_some_and(|entry| current.as_deref().ok() == Some(entry.digest.as_str()))
        })
}

fn holds_exactly(list: &podman::ManifestList, architectures: &[Arch]) -> bool {
    let every_arch_once = architectures
        .iter()
        .all(|&arch| list.entries_for(Platform::linux(arch)).len() == 1);
    every_arch_once && list.manifests.len() == architectures.len()
}

/// The builder image's definition: its Containerfile and the Debian base's.
fn builder_definition(debian: &Recipe) -> Result<String> {
    let containerfile = project::own_file(project::BUILDER_CONTAINERFILE)?;
    let definition = std::fs::read(&containerfile)
        .with_context(|| format!("cannot read {}", containerfile.display()))?;
    Ok(project::fingerprint(&[
        &definition,
        debian.fingerprint.as_bytes(),
    ]))
}

/// How many of the builder Containerfile's stages podman builds at the
/// same time (`--jobs`): its `cargo-auditable` stage compiles while its last
/// stage installs the cross toolchain, both on its `toolchain` stage.
const BUILDER_PARALLEL_STAGES: usize = 2;

fn ensure_builder(runner: &Runner, debian: &Recipe, rebuild: bool, prefix: &str) -> Result<()> {
    let containerfile = project::own_file(project::BUILDER_CONTAINERFILE)?;
    let wanted = builder_definition(debian)?;
    if !rebuild
        && definition_of(runner, project::BUILDER_IMAGE)?.as_deref() == Some(wanted.as_str())
    {
        eprintln!(
            "{prefix}base-images: {} is up to date",
            project::BUILDER_IMAGE
        );
        return Ok(());
    }
    eprintln!(
        "{prefix}base-images: building {} (Debian's Rust toolchain and cross linkers)",
        project::BUILDER_IMAGE
    );
    let context: PathBuf = containerfile
        .parent()
        .context("builder Containerfile has no directory")?
        .to_path_buf();
    let build_args = [podman::BuildArg {
        name: "DEBIAN_IMAGE".into(),
        value: debian.name.clone(),
    }];
    let labels = [(DEFINITION_LABEL.to_owned(), wanted)];
    // Its cargo-auditable step fetches from crates.io: with this machine's
    // CA bundle (for that step only; a secret is no part of the image).
    let engine = crate::engine::Engine::read(runner)?;
    let bundle = engine.host_ca_bundle();
    let secrets: Vec<(&str, &Path)> = bundle
        .as_deref()
        .map(|bundle| ("ca-bundle", bundle))
        .into_iter()
        .collect();
    runner
        .run_prefixed(
            &podman::build_tagged(
                &containerfile,
                &context,
                project::BUILDER_IMAGE,
                &build_args,
                &labels,
                &secrets,
                BUILDER_PARALLEL_STAGES,
            ),
            prefix,
        )
        .with_context(|| format!("cannot build {}", project::BUILDER_IMAGE))
}

fn sanitize(image: &str) -> String {
    image
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '-'
            }
        })
        .collect()
}

fn remove_file_if_present(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            eprintln!(
                "base-images: warning: cannot remove {}: {error}",
                path.display()
            );
        }
    }
}

impl crate::flags::BaseImages {
    pub fn run(self) -> Result<()> {
        let runner = Runner::of(&self);
        let build_platform = crate::engine::Engine::read(&runner)?.build_platform;
        match (&self.export, &self.import) {
            (Some(archive), _) => export(&runner, build_platform, archive),
            (None, Some(archive)) => import(&runner, build_platform, archive),
            (None, None) => {
                let store = match self.cache_repo.as_deref().map(str::trim) {
                    None => None,
                    Some(text) => {
                        let repository = crate::release::reference::Repository::parse(text)
                            .map_err(|error| {
                                crate::BadInput(vec![format!(
                                    "--cache-repo (or CACHE_REPO): {error:#}"
                                )])
                            })?;
                        Some(Store::new(&repository, self.cache_tls_verify, None))
                    }
                };
                ensure(&runner, build_platform, self.rebuild, store.as_ref())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime_recipe() -> Recipe {
        Recipe::load(&project::root().join(project::RUNTIME_RECIPE)).unwrap()
    }

    #[test]
    fn recipes_load_and_runtime_covers_every_target() {
        let runtime = runtime_recipe();
        assert_eq!(
            runtime.architectures(Platform::LINUX_AMD64),
            vec![Arch::Amd64, Arch::Arm64]
        );
        let debian = Recipe::load(&project::root().join(project::DEBIAN_RECIPE)).unwrap();
        assert_eq!(
            debian.architectures(Platform::LINUX_ARM64),
            vec![Arch::Arm64]
        );
        assert_ne!(runtime.fingerprint, debian.fingerprint);
    }

    #[test]
    fn mmdebstrap_command_is_reproducible_and_per_architecture() {
        let recipe = runtime_recipe();
        let command = recipe.mmdebstrap(Arch::Arm64, Path::new("/tmp/runtime.tar"));
        assert_eq!(command.program, "mmdebstrap");
        assert_eq!(
            command.env,
            vec![("SOURCE_DATE_EPOCH".to_owned(), "1700000000".to_owned())]
        );
        assert!(command.args.contains(&"--architectures=arm64".to_owned()));
        let suite_position = command
            .args
            .iter()
            .position(|arg| arg == "bookworm")
            .unwrap();
        assert_eq!(command.args[suite_position + 1], "/tmp/runtime.tar");
        assert!(command.args[suite_position + 2].starts_with("deb http://deb.debian.org/debian "));
    }

    #[test]
    fn import_labels_the_image_with_its_definition() {
        let recipe = runtime_recipe();
        let command = recipe.import(Arch::Amd64, Path::new("/tmp/x.tar"));
        let shown = command.to_string();
        assert!(
            shown.contains(&format!("LABEL {DEFINITION_LABEL}={}", recipe.fingerprint)),
            "{shown}"
        );
        assert!(
            shown.ends_with("/tmp/x.tar localhost/rc-base/runtime:bookworm-amd64"),
            "{shown}"
        );
    }

    #[test]
    fn a_build_needs_the_base_images_it_names_and_the_builder_its_debian_base() {
        let named = |images: &[&str]| Needed::named(images.iter().copied()).unwrap();
        let runtime_only = named(&["localhost/rc-base/runtime:bookworm"]);
        assert_eq!(
            runtime_only,
            Needed {
                runtime: true,
                debian: false,
                builder: false
            }
        );
        assert!(!runtime_only.debian_chain());
        let builder = named(&[
            project::BUILDER_IMAGE,
            "docker.io/library/debian:bookworm-slim",
        ]);
        assert!(builder.builder && builder.debian_chain() && !builder.runtime);
        assert_eq!(
            named(&["docker.io/library/debian:bookworm-slim"]),
            Needed::NONE
        );
        assert_eq!(
            named(&["localhost/rc-base/runtime:bookworm", project::BUILDER_IMAGE]),
            Needed::ALL
        );
        let platform = Platform::linux(Arch::Amd64);
        let (runtime, debian) = recipes().unwrap();
        let images = |needed| -> Vec<String> {
            wanted(&runtime, &debian, platform, needed)
                .unwrap()
                .into_iter()
                .map(|wanted| wanted.image)
                .collect()
        };
        assert_eq!(
            images(runtime_only),
            [
                "localhost/rc-base/runtime:bookworm-amd64",
                "localhost/rc-base/runtime:bookworm-arm64"
            ]
        );
        assert_eq!(
            images(builder),
            [
                "localhost/rc-base/debian:bookworm-amd64",
                project::BUILDER_IMAGE
            ]
        );
    }

    #[test]
    fn the_store_keeps_each_image_under_its_name_arch_and_definition() {
        let repository =
            crate::release::reference::Repository::new("ghcr.io", "acme/app-cache").unwrap();
        let store = Store::new(&repository, true, None);
        let wanted = |image: &str, arch, definition: &str| Wanted {
            image: image.into(),
            arch,
            definition: definition.into(),
        };
        assert_eq!(
            store.reference(&wanted(
                "localhost/rc-base/runtime:bookworm-arm64",
                Arch::Arm64,
                "abc"
            )),
            "ghcr.io/acme/app-cache:base-runtime-bookworm-arm64-abc"
        );
        // The builder is the build platform's: its arch is in the tag.
        assert_eq!(
            store.reference(&wanted(project::BUILDER_IMAGE, Arch::Arm64, "def")),
            "ghcr.io/acme/app-cache:base-rust-builder-bookworm-arm64-def"
        );
        assert_eq!(
            registry::parse_tags(r#"{"Repository":"r","Tags":["a","b"]}"#).unwrap(),
            ["a", "b"]
        );
        assert!(registry::parse_tags(r#"{"Repository":"r","Tags":null}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn side_by_side_jobs_report_every_failure() {
        assert!(both(Ok(()), Ok(())).is_ok());
        let failed = |text: &str| Err(anyhow::anyhow!(text.to_owned()));
        assert_eq!(
            format!("{:#}", both(failed("runtime"), Ok(())).unwrap_err()),
            "runtime"
        );
        assert_eq!(
            format!("{:#}", both(Ok(()), failed("builder")).unwrap_err()),
            "builder"
        );
        assert_eq!(
            format!(
                "{:#}",
                both(failed("runtime"), failed("builder")).unwrap_err()
            ),
            "runtime; and: builder"
        );
        assert_ne!(Chain::Runtime.prefix(), Chain::Builder.prefix());
    }

    #[test]
    fn fingerprints_change_with_any_part() {
        assert_eq!(
            project::fingerprint(&[b"a", b"b"]),
            project::fingerprint(&[b"a", b"b"])
        );
        assert_ne!(
            project::fingerprint(&[b"a", b"b"]),
            project::fingerprint(&[b"ab"])
        );
        assert_eq!(project::fingerprint(&[b"x"]).len(), 24);
    }
}
