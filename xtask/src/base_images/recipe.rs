//! A base image's recipe (`containers/base/*.json`): what mmdebstrap
//! unpacks, and how the root file system becomes an image.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{empty_context, DEFINITION_LABEL};
use crate::{
    engine::podman,
    exec::Command,
    platform::{Arch, Platform, SUPPORTED},
    project,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    /// `targets`: every supported platform; `build-platform`: only podman's own.
    #[serde(rename = "for")]
    pub scope: Scope,
    pub suite: String,
    pub sources: Vec<String>,
    pub source_date_epoch: i64,
    pub mmdebstrap_options: Vec<String>,
    /// `podman import --change` instructions (CMD, ENV, ...).
    pub changes: Vec<String>,
    /// Imported as a dated copy ([`podman::dated_copy`]): the image's
    /// digest is its files' (a release's base, whose history every
    /// release image carries: `reproduce` rebuilds it from here).
    #[serde(default)]
    pub dated: bool,
    #[serde(skip)]
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Targets,
    BuildPlatform,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Recipe> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read base image recipe {}", path.display()))?;
        let mut recipe: Recipe = serde_json::from_slice(&bytes)
            .with_context(|| format!("base image recipe {} is not valid", path.display()))?;
        // How a dated recipe's image is made is part of its definition
        // (an undated one's fingerprint is its file's alone, as before).
        recipe.fingerprint = if recipe.dated {
            project::fingerprint(&[&bytes, podman::DATED_COPY.as_bytes()])
        } else {
            project::fingerprint(&[&bytes])
        };
        Ok(recipe)
    }

    pub fn architectures(&self, build_platform: Platform) -> Vec<Arch> {
        match self.scope {
            Scope::Targets => SUPPORTED.iter().map(|platform| platform.arch).collect(),
            Scope::BuildPlatform => vec![build_platform.arch],
        }
    }

    /// `localhost/rc-base/runtime:bookworm` → `localhost/rc-base/runtime:bookworm-arm64`.
    pub fn image_for(&self, arch: Arch) -> String {
        format!("{}-{}", self.name, arch.oci_name())
    }

    pub fn mmdebstrap(&self, arch: Arch, tarball: &Path) -> Command {
        Command::new("mmdebstrap")
            .env("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string())
            .arg("--quiet")
            .arg(format!("--architectures={}", arch.oci_name()))
            .args(self.mmdebstrap_options.iter().cloned())
            .arg(&self.suite)
            .arg(tarball.to_string_lossy())
            .args(self.sources.iter().cloned())
    }

    pub fn import(&self, arch: Arch, tarball: &Path) -> Command {
        let mut changes = vec![format!("LABEL {DEFINITION_LABEL}={}", self.fingerprint)];
        changes.extend(self.changes.iter().cloned());
        podman::import(tarball, arch, &changes, &self.image_for(arch))
    }

    /// The commands that make `arch`'s image from its root file system:
    /// imported, then (a dated recipe) made a dated copy of, under the
    /// image's own name, the import's name dropped.
    pub fn import_commands(&self, arch: Arch, tarball: &Path) -> Vec<Command> {
        if !self.dated {
            return vec![self.import(arch, tarball)];
        }
        let image = self.image_for(arch);
        let imported = format!("{image}-imported");
        let mut instructions = vec![format!("LABEL {DEFINITION_LABEL}={}", self.fingerprint)];
        instructions.extend(self.changes.iter().cloned());
        let context = empty_context(tarball);
        vec![
            podman::import(tarball, arch, &[], &imported),
            podman::dated_copy(
                &imported,
                &instructions,
                self.source_date_epoch,
                arch,
                &image,
                &context,
            ),
            podman::image_remove(&imported),
        ]
    }
}
