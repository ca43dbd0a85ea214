//! The records a local engine's storage keeps of itself (containers/storage,
//! the library podman, buildah and skopeo share): every layer once with its
//! size, every image with its top layer, names and digests, every
//! container's layer, and the entries of every manifest list. They are the
//! only place where bytes on disk are counted layer by layer on every podman
//! version: `podman system df` counts a layer once per image that shares it
//! up to podman 4.3, and `podman images` and `image inspect` compute each
//! image's parent anew (seconds at a few hundred images on 4.3).
//!
//! They are files under the graph root, so they exist for an engine that
//! shares this host; a remote engine's are read through its own figures
//! (`podman system df`). The files are written whole and renamed into place
//! by containers/storage, so a read never sees half of one.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One layer of `<driver>-layers/layers.json` (or `volatile-layers.json`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub id: String,
    #[serde(default)]
    pub parent: Option<String>,
    /// Bytes of the layer's files, uncompressed (`-1` or absent where
    /// containers/storage has not measured it, e.g. a layer being written).
    #[serde(default, rename = "diff-size")]
    pub diff_size: Option<i64>,
}

/// One image of `<driver>-images/images.json`. A manifest list is an image
/// without a layer; its list is the big data item `manifest`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    /// The digest of its manifest, and every digest it is known by.
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub digests: Vec<String>,
    #[serde(default)]
    pub layer: Option<String>,
    /// The image's metadata (manifests, config, signatures, a list's own
    /// list), in bytes per item.
    #[serde(default, rename = "big-data-sizes")]
    pub big_data_sizes: BTreeMap<String, i64>,
}

impl ImageRecord {
    pub fn has_digest(&self, digest: &str) -> bool {
        self.digest == digest || self.digests.iter().any(|known| known == digest)
    }

    pub fn metadata_bytes(&self) -> u64 {
        self.big_data_sizes
            .values()
            .map(|size| u64::try_from(*size).unwrap_or(0))
            .sum()
    }
}

/// One container of `<driver>-containers/containers.json`: podman's, and
/// buildah's working containers of builds.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    #[serde(default)]
    pub image: String,
    /// The container's own (writable) layer, on top of its image's.
    #[serde(default)]
    pub layer: String,
}

/// A manifest list: the image that holds it and the digests of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRecord {
    pub image_id: String,
    pub entry_digests: Vec<String>,
}

/// Everything a storage holds, as its records say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub layers: Vec<LayerRecord>,
    pub images: Vec<ImageRecord>,
    pub containers: Vec<ContainerRecord>,
    pub lists: Vec<ListRecord>,
}

/// The files of a storage at `graph_root` with `driver` (`overlay`, `vfs`).
pub struct Store {
    graph_root: PathBuf,
    driver: String,
}

impl Store {
    pub fn new(graph_root: &Path, driver: &str) -> Store {
        Store {
            graph_root: graph_root.to_path_buf(),
            driver: driver.to_owned(),
        }
    }

    fn file(&self, kind: &str, name: &str) -> PathBuf {
        self.graph_root
            .join(format!("{}-{kind}", self.driver))
            .join(name)
    }

    /// The records, read whole. A storage podman has not written yet (no
    /// file) holds nothing.
    pub fn read(&self) -> Result<Records> {
        let mut layers: Vec<LayerRecord> = read_json(&self.file("layers", "layers.json"))?;
        layers.extend(read_json::<Vec<LayerRecord>>(
            &self.file("layers", "volatile-layers.json"),
        )?);
        let images: Vec<ImageRecord> = read_json(&self.file("images", "images.json"))?;
        let containers = read_json(&self.file("containers", "containers.json"))?;
        let lists = images
            .iter()
            .filter(|image| image.layer.is_none() && image.big_data_sizes.contains_key("manifest"))
            .filter_map(|image| self.list(image).transpose())
            .collect::<Result<_>>()?;
        Ok(Records {
            layers,
            images,
            containers,
            lists,
        })
    }

    /// The list a layerless image holds, if its manifest is one. The big
    /// data item `manifest` is the file of that name in the image's
    /// directory (containers/storage encodes only names with other
    /// characters than `a-z0-9.`).
    fn list(&self, image: &ImageRecord) -> Result<Option<ListRecord>> {
        let path = self.file("images", &image.id).join("manifest");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // Removed between the two reads.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        Ok(parse_list(&text).map(|entry_digests| ListRecord {
            image_id: image.id.clone(),
            entry_digests,
        }))
    }
}

/// The entries' digests of a manifest list (an OCI index or a Docker list);
/// `None` for an image's manifest.
pub fn parse_list(text: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
    }
    #[derive(Deserialize)]
    struct List {
        manifests: Option<Vec<Entry>>,
    }
    let list: List = serde_json::from_str(text).ok()?;
    Some(
        list.manifests?
            .into_iter()
            .map(|entry| entry.digest)
            .collect(),
    )
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot parse containers/storage's {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot read containers/storage's {} (run as the user whose storage it is)",
                path.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_from_the_storage_files() {
        let root = std::env::temp_dir().join(format!("storage-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for directory in [
            "overlay-layers",
            "overlay-images/l1st",
            "overlay-containers",
        ] {
            std::fs::create_dir_all(root.join(directory)).unwrap();
        }
        // Trimmed from podman 4.3.1's storage.
        std::fs::write(
            root.join("overlay-layers/layers.json"),
            r#"[{"id":"base","created":"2026-12-07T21:41:05Z","diff-digest":"sha256:aa","diff-size":608474624,"uidset":[0]},
                {"id":"top","parent":"base","diff-size":1024}]"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-layers/volatile-layers.json"),
            r#"[{"id":"rw","parent":"top","diff-size":-1}]"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-images/images.json"),
            r#"[{"id":"img","digest":"sha256:d1","names":["localhost/a:1"],"layer":"top",
                 "big-data-sizes":{"manifest":344,"sha256:img":900}},
                {"id":"l1st","digest":"sha256:l","names":["localhost/a:list"],
                 "big-data-names":["manifest","instances.json"],
                 "big-data-sizes":{"manifest":491,"instances.json":511}}]"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-images/l1st/manifest"),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
                "manifests":[{"digest":"sha256:d1","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-containers/containers.json"),
            r#"[{"id":"c","names":["buildah-working-container"],"image":"img","layer":"rw","metadata":"{}"}]"#,
        )
        .unwrap();
        let records = Store::new(&root, "overlay").read().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(records.layers.len(), 3);
        assert_eq!(records.layers[1].parent.as_deref(), Some("base"));
        assert_eq!(records.layers[2].diff_size, Some(-1));
        assert_eq!(records.images[0].metadata_bytes(), 1244);
        assert!(records.images[0].has_digest("sha256:d1"));
        assert_eq!(records.containers[0].layer, "rw");
        assert_eq!(
            records.lists,
            [ListRecord {
                image_id: "l1st".into(),
                entry_digests: vec!["sha256:d1".into()]
            }]
        );
    }

    #[test]
    fn a_storage_podman_has_not_written_holds_nothing() {
        let records = Store::new(Path::new("/nonexistent/storage"), "overlay")
            .read()
            .unwrap();
        assert_eq!(records, Records::default());
    }

    #[test]
    fn only_a_list_has_entries() {
        let manifest = r#"{"schemaVersion":2,"config":{"digest":"sha256:c"},"layers":[]}"#;
        assert_eq!(parse_list(manifest), None);
        let docker_list = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"digest":"sha256:a"},{"digest":"sha256:b"}]}"#;
        assert_eq!(
            parse_list(docker_list),
            Some(vec!["sha256:a".to_owned(), "sha256:b".to_owned()])
        );
    }
}
