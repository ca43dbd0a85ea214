//! What a release says it was built from: its provenance (SLSA v1, as
//! `sign::attest::provenance` writes it) or, for a release without one,
//! its images' OCI labels.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::sign::attest::BaseImage;

/// The inputs a rebuild needs, as the release recorded them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// The full commit ID.
    pub commit: String,
    /// The release's primary tag (its `version` label comes from it).
    pub tag: String,
    /// The Cargo package released (`None`: the one the checkout declares).
    pub package: Option<String>,
    /// The Containerfile and the context, relative to the workspace root
    /// (`None`: the declared ones).
    pub containerfile: Option<String>,
    pub context: Option<String>,
    /// The user's `--build-arg`s.
    pub build_args: Vec<String>,
    /// The base images each platform's build took.
    pub base_images: Vec<RecordedBase>,
    /// The podman and xtask that built it, when known.
    pub podman: Option<String>,
    pub xtask: Option<String>,
    /// Where this came from: `provenance (signature checked)`,
    /// `provenance (signature NOT checked)`, `labels`.
    pub source: String,
}

/// One base image of one platform's build, as its provenance names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedBase {
    pub platform: String,
    #[serde(flatten)]
    pub base: BaseImage,
}

impl RecordedBase {
    pub fn of(platform: crate::platform::Platform, base: BaseImage) -> Self {
        RecordedBase {
            platform: platform.to_string(),
            base,
        }
    }
}

/// From a provenance predicate (pure).
pub fn from_provenance(predicate: &Value, checked: bool) -> Result<Recorded> {
    let definition = &predicate["buildDefinition"];
    let external = &definition["externalParameters"];
    let internal = &definition["internalParameters"];
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let commit = text(&external["source"]["commit"]).context("the provenance names no commit")?;
    let tag = text(&external["source"]["tag"]).context("the provenance names no tag")?;
    let platform = text(&external["platform"]).unwrap_or_default();
    let base_images = definition["resolvedDependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|dependency| {
            let annotations = &dependency["annotations"];
            Some(RecordedBase {
                platform: platform.clone(),
                base: BaseImage {
                    argument: text(&dependency["name"])?,
                    image: text(&dependency["uri"])?,
                    digest: text(&dependency["digest"]["sha256"])
                        .map(|hex| format!("sha256:{hex}")),
                    resolved: text(&annotations["image"]),
                    kept: text(&annotations["kept"]),
                    id: text(&annotations["imageId"]),
                },
            })
        })
        .collect();
    let version = &predicate["runDetails"]["builder"]["version"];
    Ok(Recorded {
        commit,
        tag,
        package: text(&external["package"]),
        containerfile: text(&external["containerfile"]),
        context: text(&external["context"]),
        build_args: internal["buildArgs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|argument| argument.as_str().map(str::to_owned))
            .collect(),
        base_images,
        podman: text(&version["podman"]),
        xtask: text(&version["xtask"]),
        source: if checked {
            "provenance (signature checked)".to_owned()
        } else {
            "provenance (signature NOT checked: pass --key or --certificate-identity)".to_owned()
        },
    })
}

/// What this run built: the release's own inputs (for `build-and-push
/// --reproduce`, which knows them without reading them back).
pub fn of_release(
    release: &crate::release::Release,
    build_args: &[String],
    podman: &str,
    base_images: Vec<RecordedBase>,
) -> Recorded {
    let declared = &release.declared;
    let relative = |path: &std::path::Path| {
        path.strip_prefix(&declared.workspace_root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    Recorded {
        commit: release.source.commit.clone(),
        tag: release.tags.primary().to_owned(),
        package: Some(declared.package.name.clone()),
        containerfile: Some(relative(&declared.containerfile)),
        context: Some(relative(&declared.context)),
        build_args: build_args.to_vec(),
        base_images,
        podman: Some(podman.to_owned()),
        xtask: Some(env!("CARGO_PKG_VERSION").to_owned()),
        source: "this run's own inputs".to_owned(),
    }
}

/// From an image's labels, for a release without provenance: the commit
/// (`org.opencontainers.image.revision`) and the tag (`...version`); the
/// rest is what the commit declares.
pub fn from_labels(revision: Option<String>, version: Option<String>) -> Result<Recorded> {
    let commit = revision.context(
        "the release has no provenance and its image no org.opencontainers.image.revision \
         label: nothing says which commit it was built from",
    )?;
    Ok(Recorded {
        commit,
        tag: version.unwrap_or_default(),
        package: None,
        containerfile: None,
        context: None,
        build_args: Vec::new(),
        base_images: Vec::new(),
        podman: None,
        xtask: None,
        source: "labels (no provenance: build arguments and base images unknown)".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provenance_gives_every_input_of_the_build() {
        let predicate = serde_json::json!({
            "buildDefinition": {
                "externalParameters": {
                    "source": {"uri": "git+https://x/y", "commit": "abc123", "tag": "v1.2.3"},
                    "package": "hello-service",
                    "platform": "linux/arm64",
                    "containerfile": "Containerfile",
                    "context": ".",
                },
                "internalParameters": {"buildArgs": ["GREETING=hi"], "sourceDateEpoch": 1},
                "resolvedDependencies": [
                    {"uri": "git+https://x/y@v1.2.3", "digest": {"gitCommit": "abc123"}},
                    {"name": "RUNTIME_IMAGE", "uri": "localhost/rc-base/runtime:bookworm",
                     "digest": {"sha256": "00ff"},
                     "annotations": {"image": "localhost/rc-base/runtime:bookworm-arm64",
                                     "imageId": "sha256:11ee",
                                     "kept": "r.example/acme/layers:base-runtime-arm64-f1"}},
                    {"name": "OTHER_IMAGE", "uri": "docker.io/library/busybox:1"},
                ],
            },
            "runDetails": {"builder": {"version": {"xtask": "0.1.0", "podman": "4.3.1"}}},
        });
        let recorded = from_provenance(&predicate, true).unwrap();
        assert_eq!(recorded.commit, "abc123");
        assert_eq!(recorded.tag, "v1.2.3");
        assert_eq!(recorded.package.as_deref(), Some("hello-service"));
        assert_eq!(recorded.build_args, ["GREETING=hi"]);
        assert_eq!(
            recorded.base_images,
            [
                RecordedBase {
                    platform: "linux/arm64".to_owned(),
                    base: BaseImage {
                        argument: "RUNTIME_IMAGE".to_owned(),
                        image: "localhost/rc-base/runtime:bookworm".to_owned(),
                        digest: Some("sha256:00ff".to_owned()),
                        resolved: Some("localhost/rc-base/runtime:bookworm-arm64".to_owned()),
                        kept: Some("r.example/acme/layers:base-runtime-arm64-f1".to_owned()),
                        id: Some("sha256:11ee".to_owned()),
                    },
                },
                RecordedBase {
                    platform: "linux/arm64".to_owned(),
                    base: BaseImage {
                        argument: "OTHER_IMAGE".to_owned(),
                        image: "docker.io/library/busybox:1".to_owned(),
                        digest: None,
                        resolved: None,
                        kept: None,
                        id: None,
                    },
                }
            ]
        );
        assert_eq!(
            recorded.base_images[0].base.taken(),
            "localhost/rc-base/runtime:bookworm-arm64"
        );
        assert_eq!(
            recorded.base_images[1].base.taken(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(recorded.podman.as_deref(), Some("4.3.1"));
        assert!(from_provenance(&serde_json::json!({}), true).is_err());
        assert!(from_labels(None, Some("v1".into())).is_err());
    }
}
