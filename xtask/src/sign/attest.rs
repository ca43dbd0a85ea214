//! The attestations each platform image of a signed release gets, signed by
//! the release's signer (`cosign attest`, one per image: cosign 2.5's
//! `attest --recursive` attests the list only):
//!
//! - provenance (SLSA v1, `slsaprovenance1`): the source repository and
//!   commit, the builder (this xtask and its version, podman's version),
//!   the Containerfile, the platform, the base images;
//! - an SBOM (CycloneDX 1.5, `cyclonedx`): the crates compiled into the
//!   binary for that platform, from cargo's own resolution of the lock
//!   file (`cargo metadata --locked --filter-platform TRIPLE`: normal
//!   dependencies only, as built for that target), with the commit.
//!
//! [`check_attestations`] is the other side: each must be signed by the
//! release's signer and name the image's own digest and commit.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::{
    registry_flags,
    verify::{verify_attestation_command, Check, Identity},
    Signer, PROGRAM,
};
use crate::{
    engine::Destination,
    exec::{Command, Runner},
    platform::{Arch, Platform},
    release::Release,
};

pub const PROVENANCE: &str = "slsaprovenance1";
pub const SBOM: &str = "cyclonedx";
/// The `predicateType` cosign writes for each.
const PROVENANCE_TYPE: &str = "https://slsa.dev/provenance/v1";
const SBOM_TYPE: &str = "https://cyclonedx.org/bom";
/// What kind of build the provenance describes.
pub const BUILD_TYPE: &str =
    "https://github.com/daksha-rc/rc-web/blob/main/docs/release.md#provenance";
/// The property of the SBOM's component that holds the commit.
const COMMIT_PROPERTY: &str = "vcs:commit";

pub fn attest_command(
    signer: &Signer,
    destination: &Destination,
    kind: &str,
    predicate: &std::path::Path,
    reference: &str,
) -> Command {
    let command = Command::new(PROGRAM)
        .args(["attest", "--yes", "--replace", "--type", kind])
        .arg("--predicate")
        .arg(predicate.to_string_lossy())
        .args(registry_flags(destination));
    super::with_logins(signer.apply(command), destination).arg(reference)
}

/// The Rust target a platform's binary is compiled for.
pub fn rust_target(platform: Platform) -> &'static str {
    match platform.arch {
        Arch::Amd64 => "x86_64-unknown-linux-gnu",
        Arch::Arm64 => "aarch64-unknown-linux-gnu",
    }
}

/// What the provenance says beyond the release itself.
pub struct Builder {
    pub xtask_version: String,
    pub podman_version: String,
    /// The base images this platform's build took.
    pub base_images: Vec<BaseImage>,
    /// The user's own `--build-arg`s, where this run built the images.
    pub build_args: Vec<String>,
}

/// One base image of a platform's build, as the provenance records it (a
/// `resolvedDependencies` entry: `name`, `uri`, `digest`, `annotations`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseImage {
    /// The build argument that names it, and the image it names.
    pub argument: String,
    pub image: String,
    /// The manifest digest this storage knows it by (changes with a push).
    pub digest: Option<String>,
    /// For the project's base images: the image of this platform's
    /// architecture the name stands for, and where the store keeps it.
    pub resolved: Option<String>,
    pub kept: Option<String>,
    /// Its image ID (config digest), the same wherever it is: what a
    /// rebuild checks a base image taken from the store against.
    pub id: Option<String>,
}

impl BaseImage {
    /// The image a build takes: the architecture's, or the one named.
    pub fn taken(&self) -> &str {
        self.resolved.as_deref().unwrap_or(&self.image)
    }
}

pub fn provenance(release: &Release, builder: &Builder, platform: Platform) -> Value {
    let package = &release.declared.package;
    let commit = &release.source.commit;
    let source = if package.source.is_empty() {
        format!("git+file://{}", release.declared.workspace_root.display())
    } else {
        format!("git+{}", package.source)
    };
    let relative = |path: &std::path::Path| {
        path.strip_prefix(&release.declared.workspace_root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut dependencies = vec![json!({
        "uri": format!("{source}@{}", release.tags.primary()),
        "digest": {"gitCommit": commit},
    })];
    for base in &builder.base_images {
        let mut dependency = json!({"name": base.argument, "uri": base.image});
        if let Some(hex) = base
            .digest
            .as_deref()
            .and_then(|digest| digest.strip_prefix("sha256:"))
        {
            dependency["digest"] = json!({"sha256": hex});
        }
        let annotations: serde_json::Map<String, Value> = [
            ("image", &base.resolved),
            ("imageId", &base.id),
            ("kept", &base.kept),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), json!(value.as_ref()?))))
        .collect();
        if !annotations.is_empty() {
            dependency["annotations"] = Value::Object(annotations);
        }
        dependencies.push(dependency);
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": {"uri": source, "commit": commit, "tag": release.tags.primary()},
                "package": package.name,
                "platform": platform.to_string(),
                "containerfile": relative(&release.declared.containerfile),
                "context": relative(&release.declared.context),
            },
            "internalParameters": {
                "recipe": if release.declared.stages.is_empty() { "plain" } else { "staged" },
                "buildArgs": builder.build_args,
                "sourceDateEpoch": release.source.commit_time,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": "cargo xtask (rc-web release pipeline) with podman",
                "version": {"xtask": builder.xtask_version, "podman": builder.podman_version},
            },
            "metadata": {"invocationId": format!("{}-{}", release.source.short_commit, std::process::id())},
        },
    })
}

/// The CycloneDX SBOM of `release`'s package as compiled for `platform`,
/// from `cargo metadata`'s answer for that platform (`metadata`).
pub fn sbom(release: &Release, platform: Platform, metadata: &Value) -> Result<Value> {
    let package = &release.declared.package;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let root = packages
        .iter()
        .find(|candidate| candidate["name"] == package.name.as_str())
        .and_then(|found| found["id"].as_str())
        .with_context(|| format!("cargo metadata does not list {}", package.name))?;
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata: no resolve")?;
    // Normal dependencies only: what is linked into the binary (build
    // scripts and proc macros run at build time and are not shipped).
    let mut reached = vec![root.to_owned()];
    let mut index = 0;
    while index < reached.len() {
        let id = reached[index].clone();
        index += 1;
        let Some(node) = nodes.iter().find(|node| node["id"] == id.as_str()) else {
            continue;
        };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null());
            let Some(dep_id) = dep["pkg"].as_str() else {
                continue;
            };
            if normal && !reached.iter().any(|seen| seen == dep_id) {
                reached.push(dep_id.to_owned());
            }
        }
    }
    let component = |found: &Value, kind: &str| {
        let name = found["name"].as_str().unwrap_or_default();
        let version = found["version"].as_str().unwrap_or_default();
        let mut component = json!({
            "type": kind,
            "bom-ref": format!("pkg:cargo/{name}@{version}"),
            "name": name,
            "version": version,
            "purl": format!("pkg:cargo/{name}@{version}"),
        });
        if let Some(license) = found["license"].as_str() {
            component["licenses"] = json!([{"expression": license}]);
        }
        component
    };
    let mut components: Vec<Value> = reached[1..]
        .iter()
        .filter_map(|id| packages.iter().find(|found| found["id"] == id.as_str()))
        .map(|found| component(found, "library"))
        .collect();
    components.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    let root_package = packages
        .iter()
        .find(|found| found["id"] == root)
        .context("the root package")?;
    let mut main = component(root_package, "application");
    main["properties"] = json!([
        {"name": COMMIT_PROPERTY, "value": release.source.commit},
        {"name": "cargo:target", "value": rust_target(platform)},
    ]);
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "component": main,
            "tools": {"components": [{"type": "application", "name": "cargo xtask", "version": env!("CARGO_PKG_VERSION")}]},
        },
        "components": components,
    }))
}

/// `cargo metadata` of the release's workspace, resolved for `platform`.
pub fn cargo_metadata(runner: &Runner, release: &Release, platform: Platform) -> Result<Value> {
    let answer = runner.read(
        &Command::new(crate::project::cargo())
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .args(["--filter-platform", rust_target(platform)])
            .current_dir(&release.declared.workspace_root),
    )?;
    serde_json::from_str(&answer).context("cargo metadata printed no JSON")
}

/// The provenance (its predicate) of the image `reference` (`repo@digest`),
/// and whether its signature was checked: against `identity` when given
/// (`cosign verify-attestation`), else read as the registry holds it
/// (`cosign download attestation`). `None`: the image has none.
pub fn provenance_of(
    runner: &Runner,
    identity: Option<&Identity>,
    destination: &Destination,
    reference: &str,
) -> Result<Option<(Value, bool)>> {
    let digest = reference.rsplit('@').next().unwrap_or_default();
    let answer = match identity {
        Some(identity) => runner
            .read(&verify_attestation_command(
                identity,
                destination,
                PROVENANCE,
                reference,
            ))
            .with_context(|| format!("the provenance of {reference} does not verify"))?,
        None => runner.read(
            &Command::new(PROGRAM)
                .args([
                    "download",
                    "attestation",
                    "--predicate-type",
                    PROVENANCE_TYPE,
                ])
                .args(registry_flags(destination))
                .arg(reference),
        )?,
    };
    Ok(statements(&answer)
        .into_iter()
        .filter(|statement| statement["predicateType"] == PROVENANCE_TYPE)
        .find(|statement| names(statement, PROVENANCE, digest, None).is_ok())
        .map(|statement| (statement["predicate"].clone(), identity.is_some())))
}

/// The in-toto statements of cosign's `verify-attestation` answer.
fn statements(answer: &str) -> Vec<Value> {
    answer
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|envelope| {
            let payload = envelope["payload"].as_str()?;
            let decoded = base64_decode(payload)?;
            serde_json::from_slice(&decoded).ok()
        })
        .collect()
}

/// Standard base64 (DSSE payloads); `None` if it is not.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for byte in text
        .bytes()
        .filter(|byte| *byte != b'=' && !byte.is_ascii_whitespace())
    {
        let value = ALPHABET.iter().position(|candidate| *candidate == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// Whether `statement` is about `digest` and says it was built from `commit`.
fn names(statement: &Value, kind: &str, digest: &str, commit: Option<&str>) -> Result<(), String> {
    let hex = digest.trim_start_matches("sha256:");
    let subjects: Vec<&str> = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|subject| subject["digest"]["sha256"].as_str())
        .collect();
    if !subjects.contains(&hex) {
        return Err(format!(
            "it is about sha256:{}, not this image",
            subjects.first().unwrap_or(&"(nothing)")
        ));
    }
    let said = match kind {
        PROVENANCE => statement["predicate"]["buildDefinition"]["externalParameters"]["source"]
            ["commit"]
            .as_str(),
        _ => statement["predicate"]["metadata"]["component"]["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|property| property["name"] == COMMIT_PROPERTY)
            .and_then(|property| property["value"].as_str()),
    };
    match (commit, said) {
        (Some(commit), Some(said)) if said != commit => {
            Err(format!("it says commit {said}, the image says {commit}"))
        }
        (_, None) => Err("it names no commit".to_owned()),
        _ => Ok(()),
    }
}

/// The image's own word for its commit (`org.opencontainers.image.revision`).
fn revision(runner: &Runner, destination: &Destination, reference: &str) -> Option<String> {
    let answer = runner
        .read(&crate::registry::image_platform_command(
            destination,
            reference,
        ))
        .ok()?;
    crate::registry::parse_image_label(&answer, "org.opencontainers.image.revision")
}

pub fn check_attestations(
    runner: &Runner,
    identity: &Identity,
    destination: &Destination,
    reference: &str,
    digest: &str,
    platform: &str,
) -> Vec<Check> {
    let commit = revision(runner, destination, reference);
    [
        (PROVENANCE, PROVENANCE_TYPE, "provenance"),
        (SBOM, SBOM_TYPE, "sbom"),
    ]
    .into_iter()
    .map(|(kind, predicate_type, what)| {
        let answer = runner.read(&verify_attestation_command(
            identity,
            destination,
            kind,
            reference,
        ));
        let (passed, detail) = match answer {
            Err(error) => (false, crate::exec::last_line(&error)),
            Ok(answer) => {
                let found: Vec<Value> = statements(&answer)
                    .into_iter()
                    .filter(|statement| statement["predicateType"] == predicate_type)
                    .collect();
                let verdicts: Vec<Result<(), String>> = found
                    .iter()
                    .map(|statement| names(statement, kind, digest, commit.as_deref()))
                    .collect();
                match verdicts.iter().find(|verdict| verdict.is_err()) {
                    _ if found.is_empty() => (false, format!("no {what} attestation")),
                    Some(Err(why)) => (false, format!("a signed {what} attestation, but {why}")),
                    _ => (
                        true,
                        format!(
                            "signed, names this image and commit {}",
                            commit
                                .as_deref()
                                .map_or("(unlabelled)", |commit| &commit[..commit.len().min(12)])
                        ),
                    ),
                }
            }
        };
        Check {
            what: what.to_owned(),
            subject: format!("{platform} {reference}"),
            passed,
            detail,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsse_payloads_decode() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("eyJhIjoxfQ==").unwrap(), br#"{"a":1}"#);
        assert!(base64_decode("not*base64").is_none());
    }

    #[test]
    fn an_attestation_must_name_the_image_and_its_commit() {
        let statement = json!({
            "subject": [{"name": "r/a", "digest": {"sha256": "aa"}}],
            "predicate": {"buildDefinition": {"externalParameters": {"source": {"commit": "c1"}}}},
        });
        assert_eq!(
            names(&statement, PROVENANCE, "sha256:aa", Some("c1")),
            Ok(())
        );
        assert!(names(&statement, PROVENANCE, "sha256:bb", Some("c1"))
            .unwrap_err()
            .contains("not this image"));
        assert!(names(&statement, PROVENANCE, "sha256:aa", Some("c2"))
            .unwrap_err()
            .contains("says commit c1"));
        let sbom = json!({
            "subject": [{"digest": {"sha256": "aa"}}],
            "predicate": {"metadata": {"component": {"properties": [{"name": COMMIT_PROPERTY, "value": "c1"}]}}},
        });
        assert_eq!(names(&sbom, SBOM, "sha256:aa", Some("c1")), Ok(()));
    }
}
