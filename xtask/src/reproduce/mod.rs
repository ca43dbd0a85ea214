//! `reproduce IMAGE[:TAG|@DIGEST]`: was this release built from the source
//! it claims? The release's provenance (its signature checked when a key or
//! identity is given) names the commit, the tag, the build arguments, the
//! base images and the podman that built it. The commit is checked out
//! from the repository this runs in (fetched from `origin` if it is not
//! there) into a directory of its own, and this xtask's `build-and-push`
//! rebuilds every platform of the list there, in a private podman storage
//! (nothing of the user's storage is used or changed; the base images are
//! made there from their definitions, or taken from the store the release
//! declares), pushing to a registry of its own on 127.0.0.1, the way the
//! release was pushed. Then the digests are compared, for each platform
//! and for the list; where they differ, [`compare`] says what differs, in
//! the order that finds the cause fastest: the podman versions, the base
//! images, the config, then layer by layer, file by file.

pub mod compare;
mod rebuild;
pub mod recorded;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::{
    engine::{podman, Destination, Engine},
    exec::Runner,
    flags::{self, Format},
    platform::Platform,
    registry,
    sign::{attest, verify},
};

use recorded::Recorded;

/// The release as the registry holds it.
#[derive(Debug, Clone)]
pub struct Published {
    /// `REGISTRY/NAME`.
    pub repository: String,
    pub destination: Destination,
    pub list_digest: String,
    /// `(platform, image digest)`, in the list's order.
    pub entries: Vec<(Platform, String)>,
    /// `(platform, image)` of the base each platform's image was built on
    /// (its last stage's), as buildah names it in the image's manifest
    /// (`org.opencontainers.image.base.name`).
    pub last_stage_bases: Vec<(Platform, Option<String>)>,
}

impl Published {
    /// Whether `platform`'s image was built on `image` in its last stage.
    pub fn is_last_stage_base(&self, platform: &str, image: &str) -> bool {
        self.last_stage_bases.iter().any(|(built_for, name)| {
            built_for.to_string() == platform && name.as_deref() == Some(image)
        })
    }
}

/// The base image buildah names in an image's manifest (pure).
pub fn base_name_of(manifest: &serde_json::Value) -> Option<String> {
    manifest["annotations"]["org.opencontainers.image.base.name"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// One platform's verdict, or the list's.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `linux/arm64`, or `list`.
    pub subject: String,
    pub published: String,
    pub rebuilt: String,
    pub identical: bool,
    /// Why they differ (per platform).
    pub difference: Option<compare::ImageDifference>,
}

/// Everything `reproduce` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: String,
    pub identical: bool,
    pub recorded: Recorded,
    /// podman's version here, and the one the release names.
    pub podman: String,
    pub recorded_podman: Option<String>,
    /// Where the rebuild took each of the project's base images from.
    pub bases_taken: Vec<rebuild::BaseTaken>,
    /// Each base image whose image ID differs from the recorded one.
    pub base_images: Vec<BaseDifference>,
    pub verdicts: Vec<Verdict>,
    pub rebuild_seconds: f64,
}

/// A base image the rebuild took with another image ID than the release.
#[derive(Debug, Clone, Serialize)]
pub struct BaseDifference {
    pub platform: String,
    pub argument: String,
    pub recorded: String,
    pub rebuilt: String,
}

impl flags::Reproduce {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(false);
        let identity = verify::Identity::of(&self.release.identity)?;
        let engine = Engine::read(&runner)?;
        let problems = problems(engine);
        if !problems.is_empty() {
            return Err(crate::BadInput(problems).into());
        }
        let published = read_published(&runner, &self.release.image, self.release.tls_verify)?;
        let recorded = read_recorded(&runner, identity.as_ref(), &published)?;
        eprintln!(
            "reproduce: {} is commit {} ({}), tag {}, from its {}",
            self.release.image,
            recorded.commit,
            recorded
                .podman
                .as_deref()
                .map_or("podman unknown".to_owned(), |version| format!(
                    "podman {version}"
                )),
            recorded.tag,
            recorded.source
        );
        let report = reproduce(&runner, engine, &self.release.image, &published, recorded)?;
        print(&report);
        if self.release.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if !report.identical {
            bail!(
                "{} is NOT reproduced from commit {}: the differences are above",
                self.release.image,
                report.recorded.commit
            );
        }
        Ok(crate::Status::Success)
    }
}

/// What keeps this machine from rebuilding a release (found before
/// anything is built).
pub fn problems(engine: &Engine) -> Vec<String> {
    let mut problems = Vec::new();
    if which::which(crate::sign::PROGRAM).is_err() {
        problems.push(
            "reproduce reads the release's provenance with cosign, which is not installed: run \
             `cargo xtask setup`"
                .to_owned(),
        );
    }
    if !engine.shares_this_host() {
        problems.push(
            "podman here is a remote engine (CONTAINER_HOST, podman machine); reproduce \
             rebuilds in a private storage on this machine: run it on Linux with a local podman"
                .to_owned(),
        );
    }
    problems
}

/// Rebuilds `published` from what it recorded and compares.
pub fn reproduce(
    runner: &Runner,
    engine: &Engine,
    image: &str,
    published: &Published,
    recorded: Recorded,
) -> Result<Report> {
    let started = Instant::now();
    let rebuilt = rebuild::rebuild(runner, published, &recorded)?;
    let rebuild_seconds = started.elapsed().as_secs_f64();
    let mut verdicts = Vec::new();
    for (platform, digest) in &published.entries {
        let theirs = rebuilt
            .index
            .entries
            .iter()
            .find(|(entry, _)| entry == &platform.to_string())
            .map(|(_, digest)| digest.clone())
            .unwrap_or_else(|| "(not rebuilt)".to_owned());
        let identical = &theirs == digest;
        let difference = if identical {
            None
        } else {
            Some(rebuilt.difference(runner, published, *platform, digest, &theirs)?)
        };
        verdicts.push(Verdict {
            subject: platform.to_string(),
            published: digest.clone(),
            rebuilt: theirs,
            identical,
            difference,
        });
    }
    verdicts.push(Verdict {
        subject: "list".to_owned(),
        published: published.list_digest.clone(),
        rebuilt: rebuilt.index.digest.clone(),
        identical: published.list_digest == rebuilt.index.digest,
        difference: None,
    });
    let base_images = recorded
        .base_images
        .iter()
        .filter_map(|base| {
            let ours = base.base.id.clone()?;
            let theirs = rebuilt.base_image_ids.iter().find(|rebuilt| {
                rebuilt.platform == base.platform && rebuilt.argument == base.base.argument
            })?;
            (theirs.id != ours).then(|| BaseDifference {
                platform: base.platform.clone(),
                argument: base.base.argument.clone(),
                recorded: ours,
                rebuilt: theirs.id.clone(),
            })
        })
        .collect();
    Ok(Report {
        image: image.to_owned(),
        identical: verdicts.iter().all(|verdict| verdict.identical),
        podman: engine.version.to_string(),
        recorded_podman: recorded.podman.clone(),
        recorded,
        bases_taken: rebuilt.bases_taken.clone(),
        base_images,
        verdicts,
        rebuild_seconds,
    })
}

/// The list `image` names, read from its registry.
pub fn read_published(runner: &Runner, image: &str, tls_verify: bool) -> Result<Published> {
    let (repository, registry_host) = verify::split_reference(image)?;
    let mut destination = Destination {
        registry: registry_host,
        tls_verify,
        format: Format::Oci,
        authfile: None,
        skopeo_runtime_dir: None,
    };
    let raw = registry::read_back(
        runner,
        &registry::inspect_remote_command(&destination, image),
    )
    .with_context(|| format!("cannot read {image} from its registry"))?;
    let value: serde_json::Value = serde_json::from_str(&raw)
        .with_context(|| format!("{image}: the registry returned no JSON"))?;
    destination.format = match value["mediaType"].as_str() {
        Some(media_type) if media_type == Format::V2s2.media_type() => Format::V2s2,
        Some(media_type) if media_type == Format::Oci.media_type() => Format::Oci,
        other => bail!(
            "{image} is {}, not a manifest list: reproduce compares a release's list and its \
             platforms",
            other.unwrap_or("(no media type)")
        ),
    };
    let list = podman::ManifestList::parse(&raw)?;
    let entries = list
        .manifests
        .iter()
        .map(|entry| {
            let platform = entry
                .platform_string()
                .context("an entry names no platform")?
                .parse::<Platform>()
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            Ok((platform, entry.digest.clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    let last_stage_bases = entries
        .iter()
        .map(|(platform, digest)| {
            let reference = format!("{repository}@{digest}");
            let manifest = registry::read_back(
                runner,
                &registry::inspect_remote_command(&destination, &reference),
            )?;
            let manifest: serde_json::Value = serde_json::from_str(&manifest)
                .with_context(|| format!("{reference}: the registry returned no JSON"))?;
            Ok((*platform, base_name_of(&manifest)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Published {
        repository,
        destination,
        list_digest: registry::digest_of(raw.as_bytes()),
        entries,
        last_stage_bases,
    })
}

/// What the release recorded: each image's provenance (which must agree
/// on the commit), or, without any, the first image's labels.
fn read_recorded(
    runner: &Runner,
    identity: Option<&verify::Identity>,
    published: &Published,
) -> Result<Recorded> {
    let mut found: Option<Recorded> = None;
    for (platform, digest) in &published.entries {
        let reference = format!("{}@{digest}", published.repository);
        let Some((predicate, checked)) =
            attest::provenance_of(runner, identity, &published.destination, &reference)?
        else {
            if identity.is_some() {
                bail!("{reference} ({platform}) has no provenance signed by the identity given");
            }
            continue;
        };
        let recorded = recorded::from_provenance(&predicate, checked)
            .with_context(|| format!("the provenance of {reference}"))?;
        match &mut found {
            Some(first) if first.commit != recorded.commit => bail!(
                "the release's images name two commits ({} and {}): it is not one build",
                first.commit,
                recorded.commit
            ),
            // Each platform's provenance names the base images it took.
            Some(first) => first.base_images.extend(recorded.base_images),
            None => found = Some(recorded),
        }
    }
    if let Some(recorded) = found {
        return Ok(recorded);
    }
    let (_, digest) = published.entries.first().context("the list is empty")?;
    let answer = runner.read(&registry::image_platform_command(
        &published.destination,
        &format!("{}@{digest}", published.repository),
    ))?;
    recorded::from_labels(
        registry::parse_image_label(&answer, "org.opencontainers.image.revision"),
        registry::parse_image_label(&answer, "org.opencontainers.image.version"),
    )
}

/// The verdict and the differences, for a person: versions first, then
/// base images, the config, the layers' files.
pub fn print(report: &Report) {
    eprintln!("\nreproduce: {}", report.image);
    if let Some(recorded) = &report.recorded_podman {
        if *recorded != report.podman {
            eprintln!(
                "  VERSIONS:  built with podman {recorded}, rebuilt with podman {}: an image \
                 differs across podman versions (its buildah label at least); rebuild with \
                 podman {recorded}",
                report.podman
            );
        }
    }
    for taken in &report.bases_taken {
        eprintln!(
            "  base:      {} ({}): {}",
            taken.image, taken.platform, taken.from
        );
    }
    for base in &report.base_images {
        eprintln!(
            "  BASE:      {} ({}) was image {}, rebuilt as {}",
            base.argument, base.platform, base.recorded, base.rebuilt
        );
    }
    for verdict in &report.verdicts {
        let word = if verdict.identical {
            "identical"
        } else {
            "DIFFERENT"
        };
        eprintln!(
            "  {word:<10} {:<12} {} (rebuilt {})",
            verdict.subject, verdict.published, verdict.rebuilt
        );
        if let Some(difference) = &verdict.difference {
            for field in &difference.config {
                eprintln!(
                    "      config {}: {} -> {}",
                    field.field, field.published, field.rebuilt
                );
            }
            for layer in &difference.layers {
                eprintln!(
                    "      layer {} ({} -> {}):",
                    layer.index,
                    layer.published.as_deref().unwrap_or("none"),
                    layer.rebuilt.as_deref().unwrap_or("none")
                );
                for file in &layer.files {
                    eprintln!("        {} {}", file.path, file.change);
                }
            }
        }
    }
    eprintln!(
        "  rebuilt in {:.1} s from commit {} ({})",
        report.rebuild_seconds, report.recorded.commit, report.recorded.source
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stages_base_is_the_one_the_image_names() {
        let manifest = serde_json::json!({"annotations": {
            "org.opencontainers.image.base.name": "localhost/rc-base/runtime:bookworm-arm64",
            "org.opencontainers.image.base.digest": "sha256:00"}});
        let named = base_name_of(&manifest);
        assert_eq!(
            named.as_deref(),
            Some("localhost/rc-base/runtime:bookworm-arm64")
        );
        assert_eq!(
            base_name_of(&serde_json::json!({"annotations": {
            "org.opencontainers.image.base.name": ""}})),
            None
        );
        let published = Published {
            repository: "r/x".into(),
            destination: Destination {
                registry: "r".into(),
                tls_verify: true,
                format: Format::Oci,
                authfile: None,
                skopeo_runtime_dir: None,
            },
            list_digest: "sha256:11".into(),
            entries: Vec::new(),
            last_stage_bases: vec![(Platform::LINUX_ARM64, named)],
        };
        assert!(
            published.is_last_stage_base("linux/arm64", "localhost/rc-base/runtime:bookworm-arm64")
        );
        assert!(!published.is_last_stage_base("linux/arm64", crate::project::BUILDER_IMAGE));
        assert!(!published
            .is_last_stage_base("linux/amd64", "localhost/rc-base/runtime:bookworm-arm64"));
    }
}
