//! Bytes on disk from a storage's records, each layer once: what images
//! use, split into what stays after `clean-build-cache` (lists, tagged
//! images, images containers use, and every layer under them) and what the
//! clean frees (the build cache), plus containers' own layers and layers
//! nothing uses. Pure: the records are read in `engine::storage`.
//!
//! The clean's rules, as `clean::survey` applies them through podman: a
//! temporary list of a run that is gone, and a list with an entry whose
//! image is missing (or no entry), are removed; every other list keeps the
//! images its entries name; a named image, or one a container uses, is
//! kept; any other image goes, unless a kept image is built on it (podman
//! refuses to remove a parent), and then it frees nothing.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::engine::{
    local_list::stale_temporary_list,
    storage::{ImageRecord, Records},
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Everything the storage's layers and images occupy, each layer once.
    pub on_disk_bytes: u64,
    /// The layers images use, each once, and the images' metadata.
    pub images_bytes: u64,
    /// Of `images_bytes`: what a clean keeps.
    pub kept_bytes: u64,
    /// Of `images_bytes`: what a clean frees.
    pub clean_frees_bytes: u64,
    /// Containers' own layers (and any layer under them no image has).
    pub containers_bytes: u64,
    /// Layers nothing uses (left by an interrupted pull or build).
    pub other_layers_bytes: u64,
    pub images: usize,
    pub layers: usize,
    /// Layers whose size the storage has not recorded (counted as 0).
    pub unmeasured_layers: usize,
}

struct Layers<'a> {
    parent: HashMap<&'a str, Option<&'a str>>,
    size: HashMap<&'a str, u64>,
}

impl<'a> Layers<'a> {
    fn new(records: &'a Records) -> Layers<'a> {
        Layers {
            parent: records
                .layers
                .iter()
                .map(|layer| (layer.id.as_str(), layer.parent.as_deref()))
                .collect(),
            size: records
                .layers
                .iter()
                .map(|layer| {
                    let size = layer.diff_size.and_then(|size| u64::try_from(size).ok());
                    (layer.id.as_str(), size.unwrap_or(0))
                })
                .collect(),
        }
    }

    /// Adds `top` and every layer under it to `into` (bounded: a layer
    /// already there ends the walk, so a loop cannot run forever).
    fn add_chain(&self, top: Option<&'a str>, into: &mut HashSet<&'a str>) {
        let mut current = top;
        while let Some(id) = current {
            if !self.parent.contains_key(id) || !into.insert(id) {
                break;
            }
            current = self.parent[id];
        }
    }

    fn bytes<'s>(&self, ids: impl IntoIterator<Item = &'s &'a str>) -> u64
    where
        'a: 's,
    {
        ids.into_iter().map(|id| self.size[id]).sum()
    }
}

/// The images a clean keeps (by ID): named ones other than lists it
/// removes, those containers use, and those the lists it keeps name.
fn kept_images<'a>(records: &'a Records, process_exists: &dyn Fn(u32) -> bool) -> HashSet<&'a str> {
    let image_has = |digest: &String| records.images.iter().any(|image| image.has_digest(digest));
    let by_id: HashMap<&str, &ImageRecord> = records
        .images
        .iter()
        .map(|image| (image.id.as_str(), image))
        .collect();
    let mut kept: HashSet<&str> = records
        .containers
        .iter()
        .map(|container| container.image.as_str())
        .collect();
    let mut removed_lists = HashSet::new();
    for list in &records.lists {
        let names = by_id
            .get(list.image_id.as_str())
            .map_or(&[][..], |image| &image.names);
        let stale = names
            .iter()
            .all(|name| stale_temporary_list(name, process_exists));
        let broken = list.entry_digests.is_empty() || !list.entry_digests.iter().all(image_has);
        if stale || broken {
            removed_lists.insert(list.image_id.as_str());
            continue;
        }
        kept.extend(
            records
                .images
                .iter()
                .filter(|image| {
                    list.entry_digests
                        .iter()
                        .any(|digest| image.has_digest(digest))
                })
                .map(|image| image.id.as_str()),
        );
    }
    kept.extend(
        records
            .images
            .iter()
            .filter(|image| !image.names.is_empty() && !removed_lists.contains(image.id.as_str()))
            .map(|image| image.id.as_str()),
    );
    kept
}

pub fn account(records: &Records, process_exists: &dyn Fn(u32) -> bool) -> Accounting {
    let layers = Layers::new(records);
    let kept = kept_images(records, process_exists);
    let (mut image_layers, mut kept_layers) = (HashSet::new(), HashSet::new());
    for image in &records.images {
        let top = image.layer.as_deref();
        layers.add_chain(top, &mut image_layers);
        if kept.contains(image.id.as_str()) {
            layers.add_chain(top, &mut kept_layers);
        }
    }
    let mut container_layers = HashSet::new();
    for container in &records.containers {
        layers.add_chain(Some(container.layer.as_str()), &mut container_layers);
    }
    // What containers stand on that is an image's is the image's.
    container_layers.retain(|id| !image_layers.contains(id));
    // An image a clean would remove frees its metadata, unless a kept image
    // is built on it (podman refuses to remove it).
    let removable = |image: &&ImageRecord| {
        !kept.contains(image.id.as_str())
            && image
                .layer
                .as_deref()
                .is_none_or(|top| !kept_layers.contains(top))
    };
    let metadata: u64 = records.images.iter().map(ImageRecord::metadata_bytes).sum();
    let images_bytes = layers.bytes(&image_layers) + metadata;
    let clean_frees_bytes = layers.bytes(image_layers.difference(&kept_layers))
        + records
            .images
            .iter()
            .filter(removable)
            .map(ImageRecord::metadata_bytes)
            .sum::<u64>();
    let all_layers = layers.bytes(layers.size.keys());
    let containers_bytes = layers.bytes(&container_layers);
    Accounting {
        on_disk_bytes: all_layers + metadata,
        images_bytes,
        kept_bytes: images_bytes - clean_frees_bytes,
        clean_frees_bytes,
        containers_bytes,
        other_layers_bytes: all_layers - layers.bytes(&image_layers) - containers_bytes,
        images: records.images.len(),
        layers: records.layers.len(),
        unmeasured_layers: records
            .layers
            .iter()
            .filter(|layer| layer.diff_size.is_none_or(|size| size < 0))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::{ContainerRecord, LayerRecord, ListRecord};

    fn layer(id: &str, parent: Option<&str>, size: i64) -> LayerRecord {
        LayerRecord {
            id: id.into(),
            parent: parent.map(Into::into),
            diff_size: Some(size),
        }
    }

    fn image(id: &str, layer: Option<&str>, names: &[&str], digest: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            names: names.iter().map(|name| name.to_string()).collect(),
            digest: digest.into(),
            digests: vec![],
            layer: layer.map(Into::into),
            big_data_sizes: [("manifest".to_owned(), 1)].into(),
        }
    }

    /// A 1000-byte base with a tagged image on it, two list entries, and a
    /// build cache of two images (one on a layer of its own).
    fn storage() -> Records {
        Records {
            layers: vec![
                layer("base", None, 1000),
                layer("deps", Some("base"), 300),
                layer("amd64", Some("deps"), 20),
                layer("arm64", Some("deps"), 30),
                layer("old", Some("base"), 400),
                layer("tagged", Some("base"), 5),
            ],
            images: vec![
                image(
                    "base-image",
                    Some("base"),
                    &["localhost/base:1"],
                    "sha256:b",
                ),
                image("deps-image", Some("deps"), &[], "sha256:d"),
                image("amd64-image", Some("amd64"), &[], "sha256:x"),
                image("arm64-image", Some("arm64"), &[], "sha256:y"),
                image("old-image", Some("old"), &[], "sha256:o"),
                image(
                    "tagged-image",
                    Some("tagged"),
                    &["localhost/t:1"],
                    "sha256:t",
                ),
                image("list", None, &["localhost/app:1"], "sha256:l"),
            ],
            containers: vec![],
            lists: vec![ListRecord {
                image_id: "list".into(),
                entry_digests: vec!["sha256:x".into(), "sha256:y".into()],
            }],
        }
    }

    const NONE_RUNS: &dyn Fn(u32) -> bool = &|_| false;

    #[test]
    fn a_shared_layer_is_counted_once() {
        let accounting = account(&storage(), NONE_RUNS);
        // podman 4.3 would count the base once per image on it: 6 times.
        assert_eq!(accounting.images_bytes, 1000 + 300 + 20 + 30 + 400 + 5 + 7);
        assert_eq!(accounting.on_disk_bytes, accounting.images_bytes);
        assert_eq!((accounting.images, accounting.layers), (7, 6));
    }

    #[test]
    fn a_clean_frees_what_only_the_cache_uses() {
        let accounting = account(&storage(), NONE_RUNS);
        // The old layer and its image's metadata; the dependency image is
        // under both entries, so it stays and frees nothing.
        assert_eq!(accounting.clean_frees_bytes, 400 + 1);
        assert_eq!(
            accounting.kept_bytes + accounting.clean_frees_bytes,
            accounting.images_bytes
        );
    }

    #[test]
    fn the_lists_a_clean_removes_keep_nothing() {
        let mut broken = storage();
        broken.images.retain(|image| image.id != "arm64-image");
        let accounting = account(&broken, NONE_RUNS);
        // The list goes, and with it what only its entries used (the arm64
        // layer is not an image's any more: nothing uses it).
        assert_eq!(accounting.clean_frees_bytes, 300 + 20 + 400 + 1 + 1 + 1 + 1);
        assert_eq!(accounting.other_layers_bytes, 30);

        let mut temporary = storage();
        temporary.images[6].names = vec!["localhost/app:build-77".into()];
        let gone = account(&temporary, NONE_RUNS);
        assert_eq!(gone.clean_frees_bytes, 300 + 20 + 30 + 400 + 5);
        let running = account(&temporary, &|pid| pid == 77);
        assert_eq!(running.clean_frees_bytes, 400 + 1);
    }

    #[test]
    fn containers_keep_their_image_and_count_their_own_layer() {
        let mut records = storage();
        records.layers.push(layer("rw", Some("old"), 70));
        records.layers.push(layer("orphan", None, 9));
        records.layers[0].diff_size = None;
        records.containers.push(ContainerRecord {
            id: "c".into(),
            image: "old-image".into(),
            layer: "rw".into(),
        });
        let accounting = account(&records, NONE_RUNS);
        assert_eq!(accounting.clean_frees_bytes, 0);
        assert_eq!(accounting.containers_bytes, 70);
        assert_eq!(accounting.other_layers_bytes, 9);
        assert_eq!(accounting.unmeasured_layers, 1);
        assert_eq!(
            accounting.on_disk_bytes,
            accounting.images_bytes + accounting.containers_bytes + accounting.other_layers_bytes
        );
    }

    #[test]
    fn a_parent_layer_loop_ends() {
        let mut records = storage();
        records.layers[0].parent = Some("tagged".into());
        let accounting = account(&records, NONE_RUNS);
        assert_eq!(accounting.images_bytes, 1755 + 7);
    }
}
