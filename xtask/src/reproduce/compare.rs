//! Two images, as `skopeo copy ... dir:` writes them (`manifest.json` and
//! each blob under its hex digest), compared the way a person looks for why
//! they differ: the config (labels, environment, entrypoint, user, history),
//! then layer by layer, file by file (path, type, mode, owner, size, mtime,
//! content hash). Read with the `tar`, `flate2` and `sha2` crates.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The label whose value names the buildah that built an image: known to
/// differ between podman versions (and nothing else about them).
pub const BUILDAH_LABEL: &str = "io.buildah.version";

/// One field of the two configs that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDifference {
    /// `Labels.org.opencontainers.image.version`, `Env`, `history[3].created`.
    pub field: String,
    pub published: String,
    pub rebuilt: String,
}

/// A file of a layer, as its tar entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `file`, `directory`, `symlink -> target`, `hardlink -> target`, ...
    pub kind: String,
    pub mode: String,
    pub owner: String,
    pub size: u64,
    pub mtime: u64,
    /// sha256 of a regular file's content.
    pub sha256: Option<String>,
}

/// One path that differs between two layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDifference {
    pub path: String,
    /// `added` (only in the rebuilt layer), `removed`, or the attributes
    /// that differ (`content`, `mtime`, `mode`, ...).
    pub change: String,
    pub published: Option<Entry>,
    pub rebuilt: Option<Entry>,
}

/// One layer that differs (by digest), and its files that do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerDifference {
    /// Its place in the image, from the bottom (0).
    pub index: usize,
    pub published: Option<String>,
    pub rebuilt: Option<String>,
    pub files: Vec<FileDifference>,
}

/// Why two images' digests differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageDifference {
    pub config: Vec<FieldDifference>,
    pub layers: Vec<LayerDifference>,
}

/// An image written by `skopeo copy ... dir:DIRECTORY`.
struct ImageDir {
    directory: PathBuf,
    manifest: Value,
}

impl ImageDir {
    fn open(directory: &Path) -> Result<ImageDir> {
        let path = directory.join("manifest.json");
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(ImageDir {
            directory: directory.to_owned(),
            manifest: serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?,
        })
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.directory.join(digest.trim_start_matches("sha256:"))
    }

    fn config(&self) -> Result<Value> {
        let digest = self.manifest["config"]["digest"]
            .as_str()
            .context("the manifest names no config")?;
        let text = std::fs::read(self.blob(digest))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// `(digest, media type)` of each layer, bottom first.
    fn layers(&self) -> Vec<(String, String)> {
        self.manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|layer| {
                (
                    layer["digest"].as_str().unwrap_or_default().to_owned(),
                    layer["mediaType"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// Compares the published image and the rebuilt one.
pub fn compare(published: &Path, rebuilt: &Path) -> Result<ImageDifference> {
    let (published, rebuilt) = (ImageDir::open(published)?, ImageDir::open(rebuilt)?);
    let mut config = manifest_differences(&published.manifest, &rebuilt.manifest);
    config.extend(config_differences(&published.config()?, &rebuilt.config()?));
    let (ours, theirs) = (published.layers(), rebuilt.layers());
    let mut layers = Vec::new();
    for index in 0..ours.len().max(theirs.len()) {
        let (left, right) = (ours.get(index), theirs.get(index));
        if left.map(|(digest, _)| digest) == right.map(|(digest, _)| digest) {
            continue;
        }
        let entries = |image: &ImageDir, layer: Option<&(String, String)>| -> Result<_> {
            match layer {
                Some((digest, media_type)) => layer_entries(&image.blob(digest), media_type),
                None => Ok(BTreeMap::new()),
            }
        };
        layers.push(LayerDifference {
            index,
            published: left.map(|(digest, _)| digest.clone()),
            rebuilt: right.map(|(digest, _)| digest.clone()),
            files: file_differences(&entries(&published, left)?, &entries(&rebuilt, right)?),
        });
    }
    Ok(ImageDifference { config, layers })
}

/// What differs in the manifests besides the blobs they name: their
/// annotations (buildah names the base image there, by digest) and media
/// types (pure).
pub fn manifest_differences(published: &Value, rebuilt: &Value) -> Vec<FieldDifference> {
    let annotations = |manifest: &Value| {
        manifest["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (ours, theirs) = (annotations(published), annotations(rebuilt));
    let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    names.sort();
    names.dedup();
    let mut fields: Vec<(String, Value, Value)> = names
        .into_iter()
        .map(|name| {
            (
                format!("manifest.annotations.{name}"),
                ours.get(name).cloned().unwrap_or(Value::Null),
                theirs.get(name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    fields.push((
        "manifest.mediaType".to_owned(),
        published["mediaType"].clone(),
        rebuilt["mediaType"].clone(),
    ));
    differing(fields)
}

fn differing(fields: Vec<(String, Value, Value)>) -> Vec<FieldDifference> {
    fields
        .into_iter()
        .filter(|(_, left, right)| left != right)
        .map(|(field, left, right)| FieldDifference {
            field,
            published: shown(&left),
            rebuilt: shown(&right),
        })
        .collect()
}

/// The config fields that differ, the buildah version first (pure).
pub fn config_differences(published: &Value, rebuilt: &Value) -> Vec<FieldDifference> {
    let mut fields: Vec<(String, Value, Value)> = Vec::new();
    let labels = |config: &Value| {
        config["config"]["Labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (ours, theirs) = (labels(published), labels(rebuilt));
    let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    names.sort_by_key(|name| (name.as_str() != BUILDAH_LABEL, name.to_owned()));
    names.dedup();
    for name in names {
        let (left, right) = (ours.get(name), theirs.get(name));
        fields.push((
            format!("Labels.{name}"),
            left.cloned().unwrap_or(Value::Null),
            right.cloned().unwrap_or(Value::Null),
        ));
    }
    for field in [
        "Env",
        "Entrypoint",
        "Cmd",
        "User",
        "WorkingDir",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        fields.push((
            field.to_owned(),
            published["config"][field].clone(),
            rebuilt["config"][field].clone(),
        ));
    }
    for field in ["architecture", "os", "variant", "created"] {
        fields.push((
            field.to_owned(),
            published[field].clone(),
            rebuilt[field].clone(),
        ));
    }
    let history = |config: &Value| config["history"].as_array().cloned().unwrap_or_default();
    let (ours, theirs) = (history(published), history(rebuilt));
    for index in 0..ours.len().max(theirs.len()) {
        for part in ["created_by", "created", "empty_layer"] {
            fields.push((
                format!("history[{index}].{part}"),
                ours.get(index)
                    .map_or(Value::Null, |step| step[part].clone()),
                theirs
                    .get(index)
                    .map_or(Value::Null, |step| step[part].clone()),
            ));
        }
    }
    differing(fields)
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every entry of a layer blob, by path.
pub fn layer_entries(blob: &Path, media_type: &str) -> Result<BTreeMap<String, Entry>> {
    let file =
        std::fs::File::open(blob).with_context(|| format!("cannot open {}", blob.display()))?;
    let mut head = [0u8; 4];
    std::fs::File::open(blob)?.read_exact(&mut head).ok();
    let reader: Box<dyn Read> = if head[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] || media_type.contains("zstd") {
        bail!(
            "{} is zstd-compressed; only gzip and plain layers are listed",
            blob.display()
        );
    } else {
        Box::new(file)
    };
    entries_of(reader)
}

/// Every entry of a tar stream, by path (pure).
pub fn entries_of(reader: impl Read) -> Result<BTreeMap<String, Entry>> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = BTreeMap::new();
    for entry in archive.entries().context("not a tar stream")? {
        let mut entry = entry?;
        let header = entry.header().clone();
        // `./etc/`, `etc/` and `etc` are one path (tar writers differ).
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = match path.trim_start_matches("./").trim_matches('/') {
            "" | "." => "/".to_owned(),
            path => path.to_owned(),
        };
        let link = || entry_link(&header);
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file".to_owned(),
            tar::EntryType::Directory => "directory".to_owned(),
            tar::EntryType::Symlink => format!("symlink -> {}", link()),
            tar::EntryType::Link => format!("hardlink -> {}", link()),
            other => format!("{other:?}").to_lowercase(),
        };
        let sha256 = if header.entry_type().is_file() {
            let mut hasher = Sha256::new();
            std::io::copy(&mut entry, &mut hasher)?;
            Some(format!("{:x}", hasher.finalize()))
        } else {
            None
        };
        entries.insert(
            path,
            Entry {
                kind,
                mode: format!("{:o}", header.mode().unwrap_or(0)),
                owner: format!(
                    "{}:{}",
                    header.uid().unwrap_or(0),
                    header.gid().unwrap_or(0)
                ),
                size: header.size().unwrap_or(0),
                mtime: header.mtime().unwrap_or(0),
                sha256,
            },
        );
    }
    Ok(entries)
}

fn entry_link(header: &tar::Header) -> String {
    header
        .link_name()
        .ok()
        .flatten()
        .map(|target| target.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The paths that differ between two layers' entries (pure).
pub fn file_differences(
    published: &BTreeMap<String, Entry>,
    rebuilt: &BTreeMap<String, Entry>,
) -> Vec<FileDifference> {
    let mut paths: Vec<&String> = published.keys().chain(rebuilt.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (left, right) = (published.get(path), rebuilt.get(path));
            let change = match (left, right) {
                (Some(left), Some(right)) if left == right => return None,
                (Some(left), Some(right)) => {
                    let mut changed = Vec::new();
                    if left.sha256 != right.sha256 {
                        changed.push("content");
                    }
                    for (name, differs) in [
                        ("type", left.kind != right.kind),
                        ("size", left.size != right.size),
                        ("mode", left.mode != right.mode),
                        ("owner", left.owner != right.owner),
                        ("mtime", left.mtime != right.mtime),
                    ] {
                        if differs {
                            changed.push(name);
                        }
                    }
                    changed.join(", ")
                }
                (Some(_), None) => "removed".to_owned(),
                (None, _) => "added".to_owned(),
            };
            Some(FileDifference {
                path: path.clone(),
                change,
                published: left.cloned(),
                rebuilt: right.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &str, u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, mtime) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(*mtime);
            header.set_cksum();
            builder
                .append_data(&mut header, path, content.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_directory_is_one_path_whichever_way_its_tar_writer_spells_it() {
        let mut builder = tar::Builder::new(Vec::new());
        for path in ["./", "./etc/", "usr/"] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_cksum();
            builder.append_data(&mut header, path, &[][..]).unwrap();
        }
        let entries = entries_of(&builder.into_inner().unwrap()[..]).unwrap();
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["/", "etc", "usr"]);
    }

    #[test]
    fn a_changed_file_is_named_with_what_changed_and_added_and_removed_ones_too() {
        let published =
            entries_of(&layer(&[("app/a", "one", 1), ("app/b", "two", 1)])[..]).unwrap();
        let rebuilt = entries_of(&layer(&[("app/a", "ONE", 1), ("app/c", "new", 1)])[..]).unwrap();
        let found = file_differences(&published, &rebuilt);
        let changes: Vec<(&str, &str)> = found
            .iter()
            .map(|difference| (difference.path.as_str(), difference.change.as_str()))
            .collect();
        assert_eq!(
            changes,
            [
                ("app/a", "content"),
                ("app/b", "removed"),
                ("app/c", "added")
            ]
        );
        let touched = entries_of(&layer(&[("app/a", "one", 2), ("app/b", "two", 1)])[..]).unwrap();
        assert_eq!(file_differences(&published, &touched)[0].change, "mtime");
        assert!(file_differences(&published, &published).is_empty());
    }

    #[test]
    fn the_buildah_version_comes_first_among_the_config_differences() {
        let config = |buildah: &str, version: &str, env: &str| {
            serde_json::json!({
                "architecture": "arm64", "os": "linux",
                "config": {"Labels": {"a.version": version, BUILDAH_LABEL: buildah}, "Env": [env]},
                "history": [{"created_by": "COPY x", "created": "1970-01-01T00:00:00Z"}],
            })
        };
        let found = config_differences(
            &config("1.28.2", "v1", "A=1"),
            &config("1.39.3", "v2", "A=1"),
        );
        let fields: Vec<&str> = found.iter().map(|found| found.field.as_str()).collect();
        assert_eq!(
            fields,
            [format!("Labels.{BUILDAH_LABEL}"), "Labels.a.version".into()]
        );
        assert_eq!(found[0].published, "1.28.2");
        assert!(config_differences(&config("1", "v", "A=1"), &config("1", "v", "A=1")).is_empty());
    }
}
