//! `clean-build-cache`: removes what builds leave behind and nothing a user
//! built: leftover build containers (buildah's, never podman's own), temporary
//! lists of runs that are gone, manifest lists whose images are missing, and
//! the build cache (dangling images), keeping every image a list refers to.
//! Reports the space reclaimed.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::{
    disk,
    exec::{Command, Runner},
    podman,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRow {
    pub id: String,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    state: String,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRow {
    pub id: String,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub parent_id: String,
    #[serde(default)]
    pub containers: u64,
}

fn podman() -> Command {
    Command::new(podman::PROGRAM)
}

/// `name:build-<pid>` is a temporary list of build-image; it is stale when
/// that process no longer runs.
pub fn stale_temporary_list(name: &str, process_exists: impl Fn(u32) -> bool) -> bool {
    let Some((_, tag)) = name.rsplit_once(':') else {
        return false;
    };
    let Some(pid) = tag
        .strip_prefix("build-")
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    !process_exists(pid)
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Containers in podman's storage that podman did not create (buildah's
/// working containers of interrupted builds).
pub fn build_containers(runner: &Runner) -> Result<Vec<ContainerRow>> {
    let json = runner.read(&podman().args(["ps", "--all", "--external", "--format", "json"]))?;
    let rows: Vec<ContainerRow> = serde_json::from_str(&json)?;
    Ok(rows
        .into_iter()
        .filter(|row| row.state.eq_ignore_ascii_case("storage"))
        .collect())
}

fn images(runner: &Runner) -> Result<Vec<ImageRow>> {
    let json = runner.read(&podman().args(["images", "--all", "--format", "json"]))?;
    Ok(serde_json::from_str(&json)?)
}

pub fn clean(runner: &Runner) -> Result<()> {
    let before = disk::report(runner)?;
    for container in build_containers(runner)? {
        eprintln!(
            "clean: leftover build container {} {:?}",
            &container.id[..12.min(container.id.len())],
            container.names
        );
        runner.run(&podman::container_remove(&container.id))?;
    }
    let mut protected = std::collections::HashSet::new();
    for image in images(runner)? {
        for name in image.names.iter().flatten() {
            if !runner.succeeds(&podman::manifest_exists(name))? {
                continue;
            }
            if stale_temporary_list(name, process_exists) {
                eprintln!("clean: temporary list of a finished run: {name}");
                runner.run(&podman::manifest_remove(name))?;
                continue;
            }
            let list = podman::ManifestList::parse(&runner.read(&podman::manifest_inspect(name))?)?;
            let mut missing = Vec::new();
            for entry in &list.manifests {
                if !runner.succeeds(&podman::image_exists(&format!("{name}@{}", entry.digest)))? {
                    missing.push(
                        entry
                            .platform_string()
                            .unwrap_or_else(|| entry.digest.clone()),
                    );
                }
            }
            if !missing.is_empty() || list.manifests.is_empty() {
                eprintln!(
                    "clean: broken manifest list {name} (missing images: {})",
                    missing.join(", ")
                );
                runner.run(&podman::manifest_remove(name))?;
                continue;
            }
            for entry in &list.manifests {
                let config = podman::ImageConfig::parse(
                    &runner.read(&podman::image_inspect(&format!("{name}@{}", entry.digest)))?,
                )?;
                protected.insert(config.id);
            }
        }
    }
    // Build cache: unnamed images no container uses and no list refers to.
    // Not `podman image prune`: podman 4.3's prune deletes the images that
    // manifest lists refer to, which would break every list.
    let all_images = images(runner)?;
    let mut removed = 0;
    for id in cache_images_children_first(&all_images, &protected) {
        // A parent whose child is kept cannot go; that is expected.
        if runner.run_quietly(&podman().args(["rmi", &id]))? {
            removed += 1;
        }
    }
    eprintln!(
        "clean: removed {removed} cached or dangling images; kept {} images that lists refer to",
        protected.len()
    );
    if runner.dry_run {
        return Ok(());
    }
    let after = disk::report(runner)?;
    // Measured on the filesystem: podman's own sizes count shared layers once per image.
    let reclaimed = after
        .storage
        .available_bytes
        .saturating_sub(before.storage.available_bytes);
    eprintln!(
        "clean: reclaimed {} on {}; {} free now",
        disk::format_bytes(reclaimed),
        after.storage.graph_root.display(),
        disk::format_bytes(after.storage.available_bytes)
    );
    Ok(())
}

impl crate::flags::CleanBuildCache {
    pub fn run(self) -> Result<()> {
        clean(&Runner::new(self.dry_run))
    }
}

/// Unnamed images that no container uses and no list refers to, ordered so
/// that children come before their parents.
pub fn cache_images_children_first(
    images: &[ImageRow],
    protected: &std::collections::HashSet<String>,
) -> Vec<String> {
    let by_id: std::collections::HashMap<&str, &ImageRow> = images
        .iter()
        .map(|image| (image.id.as_str(), image))
        .collect();
    let depth = |image: &ImageRow| {
        let mut depth = 0;
        let mut current = image;
        while let Some(parent) = by_id.get(current.parent_id.as_str()) {
            depth += 1;
            current = parent;
            if depth > images.len() {
                break;
            }
        }
        depth
    };
    let mut candidates: Vec<&ImageRow> = images
        .iter()
        .filter(|image| image.names.as_ref().is_none_or(Vec::is_empty))
        .filter(|image| image.containers == 0 && !protected.contains(&image.id))
        .collect();
    candidates.sort_by_key(|image| std::cmp::Reverse(depth(image)));
    candidates
        .into_iter()
        .map(|image| image.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, parent: &str, named: bool, containers: u64) -> ImageRow {
        ImageRow {
            id: id.into(),
            names: named.then(|| vec![format!("localhost/{id}:latest")]),
            parent_id: parent.into(),
            containers,
        }
    }

    #[test]
    fn the_cache_is_unnamed_unused_unreferenced_images_children_first() {
        let images = [
            row("base", "", true, 0),
            row("step1", "base", false, 0),
            row("step2", "step1", false, 0),
            row("instance", "step2", false, 0),
            row("in-use", "base", false, 1),
        ];
        let protected = ["instance".to_owned()].into_iter().collect();
        assert_eq!(
            cache_images_children_first(&images, &protected),
            ["step2", "step1"]
        );
    }

    #[test]
    fn temporary_lists_are_stale_only_when_their_run_is_gone() {
        let alive = |pid: u32| pid == 42;
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:build-42", alive));
        assert!(stale_temporary_list("ghcr.io/x/rc-web:build-43", alive));
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:v1.2.3", alive));
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:build-cache", alive));
        assert!(!stale_temporary_list("127.0.0.1:5000/rc-web", alive));
    }
}
