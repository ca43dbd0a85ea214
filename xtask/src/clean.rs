//! `clean-build-cache`: removes what builds leave behind and nothing a user
//! built: leftover build containers (buildah's, never podman's own), temporary
//! lists of runs that are gone, manifest lists whose images are missing, and
//! the build cache (dangling images), keeping every image a list refers to.
//! Reports the space reclaimed.

use anyhow::Result;

use crate::{
    disk,
    engine::local_list::{process_exists, stale_temporary_list},
    engine::podman::{self, ContainerRow, ImageRow},
    engine::Engine,
    exec::{Runner, Step},
};

/// Containers in podman's storage that podman did not create (buildah's
/// working containers of interrupted builds).
pub fn build_containers(runner: &Runner) -> Result<Vec<ContainerRow>> {
    let json = runner.read(&podman::containers_all())?;
    Ok(ContainerRow::parse_all(&json)?
        .into_iter()
        .filter(ContainerRow::is_buildahs)
        .collect())
}

/// Every image once: podman 5 prints a manifest list with several names on
/// a row per name (same ID, same names), and the survey would otherwise
/// remove a stale list twice.
fn images(runner: &Runner) -> Result<Vec<ImageRow>> {
    Ok(each_image_once(ImageRow::parse_all(
        &runner.read(&podman::images_all())?,
    )?))
}

fn each_image_once(images: Vec<ImageRow>) -> Vec<ImageRow> {
    let mut seen = std::collections::HashSet::new();
    images
        .into_iter()
        .filter(|image| seen.insert(image.id.clone()))
        .collect()
}

/// What `clean-build-cache` would do, found by queries alone: computed
/// whole before anything is removed, and what `check-disk-space` reports as
/// the space a clean would free.
#[derive(Debug, Default)]
pub struct Survey {
    /// buildah's working containers left by interrupted builds.
    pub containers: Vec<ContainerRow>,
    /// Temporary lists of runs that are gone.
    pub stale_lists: Vec<String>,
    /// Lists whose images are missing: `(name, the missing platforms)`.
    pub broken_lists: Vec<(String, Vec<String>)>,
    /// Images a list that stays refers to.
    pub protected: std::collections::HashSet<String>,
    /// The build cache, children first (each can go once those before it have).
    pub cache_images: Vec<String>,
    /// What a clean frees: the bytes the cache images hold that nothing
    /// kept shares (a leftover build container's files are not counted;
    /// lists are a few kilobytes).
    pub frees_bytes: u64,
}

/// How many podman queries the survey runs side by side: each is mostly
/// podman's own start (30 to 40 ms), so a few at once finish sooner, also on
/// two cores.
const QUERIES_AT_ONCE: usize = 4;

pub fn survey(runner: &Runner, engine: &Engine) -> Result<Survey> {
    let (images, containers) = std::thread::scope(|scope| {
        let containers = scope.spawn(|| build_containers(runner));
        let images = images(runner);
        (images, containers.join())
    });
    let images = images?;
    let mut survey = Survey {
        containers: containers
            .map_err(|_| anyhow::anyhow!("listing build containers panicked"))??,
        ..Survey::default()
    };
    let names: Vec<&String> = images
        .iter()
        .flat_map(|image| image.names.iter().flatten())
        .collect();
    let is_list = each_at_once(&names, |name| {
        runner.succeeds(&podman::manifest_exists(name))
    });
    let mut lists = Vec::new();
    for (name, is_list) in names.into_iter().zip(is_list) {
        if !is_list? {
            continue;
        }
        if stale_temporary_list(name, process_exists) {
            survey.stale_lists.push(name.clone());
        } else {
            lists.push(name);
        }
    }
    let contents = each_at_once(&lists, |name| crate::engine::local_list::read(runner, name));
    // A remote engine's entries are not always found among its images by
    // digest (seen with podman 4.3's service, after a list was pushed and
    // its image built again from cache): there, a list whose entries are not
    // all found is kept, and then no image can be known unused.
    let local = engine.shares_this_host();
    let mut unknown_use = false;
    for (name, list) in lists.into_iter().zip(contents) {
        let list = list?;
        let missing: Vec<String> = list
            .manifests
            .iter()
            .filter(|entry| !images.iter().any(|image| image.has_digest(&entry.digest)))
            .map(|entry| {
                entry
                    .platform_string()
                    .unwrap_or_else(|| entry.digest.clone())
            })
            .collect();
        if !missing.is_empty() && !local {
            eprintln!(
                "clean: {name}: the engine's images do not show every entry ({}); the list is \
                 kept, and no cached image is removed",
                missing.join(", ")
            );
            unknown_use = true;
            continue;
        }
        if !missing.is_empty() || list.manifests.is_empty() {
            survey.broken_lists.push((name.clone(), missing));
            continue;
        }
        survey.protected.extend(
            images
                .iter()
                .filter(|image| {
                    list.manifests
                        .iter()
                        .any(|entry| image.has_digest(&entry.digest))
                })
                .map(|image| image.id.clone()),
        );
    }
    if !unknown_use {
        survey.cache_images = cache_images_children_first(&images, &survey.protected);
    }
    survey.frees_bytes = bytes_freed(&images, &survey.cache_images);
    Ok(survey)
}

/// `query` of every item, [`QUERIES_AT_ONCE`] at a time; answers in order.
fn each_at_once<T: Sync, R: Send>(items: &[T], query: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(QUERIES_AT_ONCE).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&query).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a survey query panicked"))
            .collect()
    })
}

pub fn clean(runner: &Runner) -> Result<()> {
    let before = disk::free_space(runner)?;
    let survey = survey(runner, Engine::read(runner)?)?;
    let removed = std::sync::atomic::AtomicUsize::new(0);
    runner.execute(steps(&survey, &removed))?;
    if !runner.acts() {
        eprintln!(
            "clean: dry run, nothing was removed; a clean would remove up to {} cached or \
             dangling images (about {}) and keep {} images that lists refer to",
            survey.cache_images.len(),
            disk::format_bytes(survey.frees_bytes),
            survey.protected.len()
        );
        return Ok(());
    }
    let removed = removed.into_inner();
    eprintln!(
        "clean: removed {removed} cached or dangling images; kept {} images that lists refer to",
        survey.protected.len()
    );
    let after = disk::free_space(runner)?;
    // Measured on the filesystem: podman's own sizes count shared layers once per image.
    let reclaimed = after.available_bytes.saturating_sub(before.available_bytes);
    eprintln!(
        "clean: reclaimed {} on {}; {} free now",
        disk::format_bytes(reclaimed),
        after.graph_root.display(),
        disk::format_bytes(after.available_bytes)
    );
    Ok(())
}

/// What the survey found, said, and the steps that remove it; each cache
/// image removed counts in `removed`.
fn steps<'a>(survey: &'a Survey, removed: &'a std::sync::atomic::AtomicUsize) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for container in &survey.containers {
        eprintln!(
            "clean: leftover build container {} {:?}",
            &container.id[..12.min(container.id.len())],
            container.names
        );
        steps.push(Step::run(podman::container_remove(&container.id)));
    }
    for name in &survey.stale_lists {
        eprintln!("clean: temporary list of a finished run: {name}");
        steps.push(Step::run(podman::manifest_remove(name)));
    }
    for (name, missing) in &survey.broken_lists {
        eprintln!(
            "clean: broken manifest list {name} (missing images: {})",
            missing.join(", ")
        );
        steps.push(Step::run(podman::manifest_remove(name)));
    }
    // Build cache: unnamed images no container uses and no list refers to.
    // Not `podman image prune`: podman 4.3's prune deletes the images that
    // manifest lists refer to, which would break every list. A parent whose
    // child is kept cannot go; that is expected.
    steps.extend(survey.cache_images.iter().map(|id| {
        Step::run_with(podman::image_remove(id), move |runner, command, prefix| {
            if runner.run_quietly_prefixed(command, prefix)? {
                removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
    }));
    steps
}

/// What removing `removed` frees, from `podman images`' sizes: an image's
/// own layers are what it has beyond its parent (podman's parent is the image
/// whose layers are this one's minus the top). An image that is a parent of
/// one kept cannot go, and frees nothing.
pub fn bytes_freed(images: &[ImageRow], removed: &[String]) -> u64 {
    let by_id: std::collections::HashMap<&str, &ImageRow> = images
        .iter()
        .map(|image| (image.id.as_str(), image))
        .collect();
    let removed: std::collections::HashSet<&str> = removed.iter().map(String::as_str).collect();
    // Every ancestor of a kept image stays (bounded: each step climbs one parent).
    let mut stays: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for kept in images
        .iter()
        .filter(|image| !removed.contains(image.id.as_str()))
    {
        let mut parent = kept.parent_id.as_str();
        for _ in 0..images.len() {
            if !stays.insert(parent) {
                break;
            }
            match by_id.get(parent) {
                Some(image) => parent = image.parent_id.as_str(),
                None => break,
            }
        }
    }
    removed
        .iter()
        .filter(|id| !stays.contains(*id))
        .filter_map(|id| by_id.get(id))
        .map(|image| {
            let parent_size = by_id
                .get(image.parent_id.as_str())
                .map_or(0, |parent| parent.size);
            image.size.saturating_sub(parent_size)
        })
        .sum()
}

impl crate::flags::CleanBuildCache {
    pub fn run(self) -> Result<()> {
        clean(&Runner::of(&self))
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
        .filter(|image| !image.is_named())
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
        sized(id, parent, named, containers, 0)
    }

    fn sized(id: &str, parent: &str, named: bool, containers: u64, size: u64) -> ImageRow {
        ImageRow {
            id: id.into(),
            names: named.then(|| vec![format!("localhost/{id}:latest")]),
            parent_id: parent.into(),
            containers,
            digest: format!("sha256:{id}"),
            digests: None,
            size,
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
    fn a_clean_frees_the_layers_of_the_cache_that_nothing_kept_is_built_on() {
        // base (100) <- step1 (+10) <- step2 (+20) <- instance (+5, a list's);
        // base <- other (+40), a cache branch of its own.
        let images = [
            sized("base", "", true, 0, 100),
            sized("step1", "base", false, 0, 110),
            sized("step2", "step1", false, 0, 130),
            sized("instance", "step2", false, 0, 135),
            sized("other", "base", false, 0, 140),
        ];
        let protected = ["instance".to_owned()].into_iter().collect();
        let cache = cache_images_children_first(&images, &protected);
        // step1 and step2 stay (instance is built on them): only other's 40.
        assert_eq!(bytes_freed(&images, &cache), 40);
        // Without the list, the whole chain above base goes: 10 + 20 + 5 + 40.
        let cache = cache_images_children_first(&images, &Default::default());
        assert_eq!(bytes_freed(&images, &cache), 75);
    }

    #[test]
    fn a_list_podman_5_prints_once_per_name_is_surveyed_once() {
        let rows = ImageRow::parse_all(
            r#"[{"Id":"list","Names":["localhost/x:dup","localhost/x:kept"],"Size":608},
                {"Id":"list","Names":["localhost/x:dup","localhost/x:kept"],"Size":608},
                {"Id":"image","Size":5}]"#,
        )
        .unwrap();
        let ids: Vec<String> = each_image_once(rows)
            .into_iter()
            .map(|image| image.id)
            .collect();
        assert_eq!(ids, ["list", "image"]);
    }

    #[test]
    fn queries_at_once_answer_in_order() {
        let items: Vec<u32> = (0..11).collect();
        assert_eq!(
            each_at_once(&items, |item| item * 2),
            (0..11).map(|item| item * 2).collect::<Vec<_>>()
        );
        assert!(each_at_once(&[] as &[u32], |item| *item).is_empty());
    }
}
