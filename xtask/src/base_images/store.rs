//! The registry store of base images: a repository (the layer cache's) that
//! keeps each base image under its definition's fingerprint.

use std::path::PathBuf;

use anyhow::Result;

use super::*;

/// A registry repository that keeps base images under their definition's
/// fingerprint (the layer cache's: its own tags are buildah's hex keys, so
/// these cannot meet them).
pub struct Store {
    pub repository: String,
    pub destination: Destination,
}

impl Store {
    /// The store in the registry layer cache's repository, reached as the
    /// cache is.
    pub fn of_cache(cache: &podman::LayerCache) -> Store {
        Store {
            repository: cache.repository.clone(),
            destination: cache.destination.clone(),
        }
    }

    pub fn new(
        repository: &crate::release::reference::Repository,
        tls_verify: bool,
        authfile: Option<PathBuf>,
    ) -> Store {
        Store {
            repository: repository.name(),
            destination: Destination {
                registry: repository.registry.clone(),
                tls_verify,
                format: crate::flags::Format::Oci,
                authfile,
                skopeo_runtime_dir: None,
            },
        }
    }

    /// `localhost/rc-base/runtime:bookworm-arm64`, arm64 →
    /// `REPO:base-runtime-bookworm-arm64-<fingerprint>`.
    pub fn reference(&self, wanted: &Wanted) -> String {
        Store::reference_in(&self.repository, wanted)
    }

    /// [`Store::reference`] in `repository` (`REGISTRY/PATH`).
    pub fn reference_in(repository: &str, wanted: &Wanted) -> String {
        let name = wanted.image.rsplit('/').next().unwrap_or(&wanted.image);
        let mut tag = format!("base-{}", sanitize(name));
        let arch = format!("-{}", wanted.arch.oci_name());
        if !tag.ends_with(&arch) {
            tag.push_str(&arch);
        }
        format!("{repository}:{tag}-{}", wanted.definition)
    }

    /// Pulls every wanted image this storage lacks (or has out of date)
    /// and the store has, under its own name only (a build's history names
    /// its base, and the cache's keys hold that history); returns those the
    /// store lacks, for [`Store::keep`] once they are built.
    pub(super) fn fetch<'a>(
        &self,
        runner: &Runner,
        wanted: &'a [Wanted],
    ) -> Result<Vec<&'a Wanted>> {
        let mut lacking = Vec::new();
        for image in wanted {
            if definition_of(runner, &image.image)?.as_deref() == Some(image.definition.as_str()) {
                continue;
            }
            let remote = self.reference(image);
            let pulled = runner
                .run_quietly(&registry::pull_image_command(&self.destination, &remote))
                .unwrap_or(false);
            if !pulled {
                eprintln!(
                    "base-images: {} is not in {} under its fingerprint; building it here",
                    image.image, self.repository
                );
                lacking.push(image);
                continue;
            }
            runner.run(&podman::tag_all(&remote, &[&image.image]))?;
            runner.run(&podman::untag(&remote))?;
            let repository = &self.repository;
            runner.execute(vec![Step::work(
                format!("{} carries the definition its tag names", image.image),
                |runner, _| {
                    if definition_of(runner, &image.image)?.as_deref()
                        != Some(image.definition.as_str())
                    {
                        bail!(
                            "{remote} does not carry the definition its tag names \
                             ({DEFINITION_LABEL}); delete that tag from the registry, or run \
                             `cargo xtask base-images --rebuild --cache-repo {repository}` to \
                             replace it"
                        );
                    }
                    Ok(())
                },
            )])?;
            eprintln!("base-images: {} taken from {remote}", image.image);
        }
        Ok(lacking)
    }

    /// The push format that keeps `image`'s manifest type (OCI when it
    /// cannot be read).
    fn format_of(&self, runner: &Runner, image: &str) -> crate::flags::Format {
        let manifest_type = runner
            .read(&podman::image_inspect(image))
            .ok()
            .and_then(|json| podman::ImageConfig::parse(&json).ok())
            .and_then(|config| config.manifest_type);
        match manifest_type.as_deref() {
            Some(media_type) if media_type == crate::flags::Format::V2s2.image_media_type() => {
                crate::flags::Format::V2s2
            }
            _ => crate::flags::Format::Oci,
        }
    }

    /// Those of `wanted` the store has no tag for (all of them when it
    /// cannot say: a repository not made yet).
    pub(super) fn lacking<'a>(&self, runner: &Runner, wanted: &'a [Wanted]) -> Vec<&'a Wanted> {
        let tags = runner
            .read(&registry::list_tags_command(
                &self.destination,
                &self.repository,
            ))
            .and_then(|json| registry::parse_tags(&json))
            .unwrap_or_default();
        wanted
            .iter()
            .filter(|image| {
                let reference = self.reference(image);
                let tag = reference.rsplit(':').next().unwrap_or_default();
                !tags.iter().any(|kept| kept == tag)
            })
            .collect()
    }

    /// Pushes what this machine built, for the next one. A push the
    /// registry refuses costs the next machine a build, not this release.
    pub(super) fn keep(&self, runner: &Runner, built: &[&Wanted]) {
        for image in built {
            let remote = self.reference(image);
            // In the format it has here: the cache's keys hold the base's
            // manifest type, so a machine that pulls it must get the type
            // the layers in the cache were built on (checked on podman 5.4:
            // a base loaded from `podman save` (v2s2) and pushed as OCI gave
            // the fresh machine other keys, and no step from the cache).
            let mut destination = self.destination.clone();
            destination.format = self.format_of(runner, &image.image);
            match runner.run(&registry::push_image_command(
                &destination,
                &image.image,
                &remote,
            )) {
                Ok(()) => eprintln!("base-images: {} kept as {remote}", image.image),
                Err(error) => eprintln!(
                    "base-images: warning: cannot keep {} in {} ({}); the next machine without \
                     it builds it too",
                    image.image,
                    self.repository,
                    crate::exec::last_line(&error)
                ),
            }
        }
    }
}
