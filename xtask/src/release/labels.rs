//! The OCI labels and annotations every image gets: what it is (from rc-web's
//! Cargo metadata) and which source it was built from (from git). Every value
//! is derived from the commit, never from the clock, so two builds of one
//! commit are identical.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{
    exec::{Command, Runner},
    release::git::SourceState,
};

/// The package the image ships.
pub const PACKAGE: &str = "rc-web";

/// `org.opencontainers.image.*` keys and values, in a stable order.
pub type Labels = Vec<(String, String)>;

/// What rc-web's Cargo.toml says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub description: String,
    pub licenses: String,
    pub source: String,
}

impl Package {
    /// Reads the workspace's `cargo metadata` (no network, no dependencies),
    /// kept between runs while the two manifests it comes from (the
    /// workspace's and rc-web's) are unchanged: cargo takes 30 ms, a tenth
    /// of a warm build-and-push's own work.
    pub fn read(runner: &Runner, root: &Path) -> Result<Package> {
        let manifests = [
            root.join("Cargo.toml"),
            root.join(PACKAGE).join("Cargo.toml"),
        ];
        let memo = crate::project::Memo::new(
            crate::project::scratch_dir().join("package-metadata.json"),
            crate::project::describe_files(&manifests),
            7 * 24 * 60 * 60,
        );
        if let Some(package) = memo.load::<Package>() {
            return Ok(package);
        }
        let package = Package::read_from_cargo(runner, root)?;
        memo.store(&package);
        Ok(package)
    }

    fn read_from_cargo(runner: &Runner, root: &Path) -> Result<Package> {
        let json = runner.read(&Command::new("cargo").args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            &root.join("Cargo.toml").to_string_lossy(),
        ]))?;
        Package::parse(&json)
    }

    pub fn parse(metadata_json: &str) -> Result<Package> {
        let metadata: serde_json::Value =
            serde_json::from_str(metadata_json).context("cargo metadata printed no JSON")?;
        let package = metadata["packages"]
            .as_array()
            .and_then(|packages| packages.iter().find(|package| package["name"] == PACKAGE))
            .with_context(|| format!("the workspace has no package {PACKAGE}"))?;
        let text = |key: &str| package[key].as_str().unwrap_or_default().to_owned();
        Ok(Package {
            name: text("name"),
            description: text("description"),
            licenses: text("license"),
            source: text("repository"),
        })
    }
}

/// The labels for an image of `package` built from `source`, released as `version`.
pub fn labels(package: &Package, source: &SourceState, version: &str) -> Labels {
    let revision = if source.dirty {
        format!("{}-dirty", source.commit)
    } else {
        source.commit.clone()
    };
    [
        ("title", package.name.clone()),
        ("description", package.description.clone()),
        ("licenses", package.licenses.clone()),
        ("source", package.source.clone()),
        ("version", version.to_owned()),
        ("revision", revision),
        ("created", source.commit_date()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(key, value)| (format!("org.opencontainers.image.{key}"), value))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_comes_from_cargo_metadata() {
        let json = r#"{"packages":[
            {"name":"xtask","description":"other","license":"MIT","repository":null},
            {"name":"rc-web","description":"A service","license":"MIT OR Apache-2.0","repository":"https://github.com/o/r"}
        ]}"#;
        assert_eq!(
            Package::parse(json).unwrap(),
            Package {
                name: "rc-web".into(),
                description: "A service".into(),
                licenses: "MIT OR Apache-2.0".into(),
                source: "https://github.com/o/r".into(),
            }
        );
        assert!(Package::parse(r#"{"packages":[]}"#).is_err());
    }

    #[test]
    fn labels_come_from_the_commit_not_the_clock() {
        let package = Package {
            name: "rc-web".into(),
            description: String::new(),
            licenses: "MIT".into(),
            source: "https://github.com/o/r".into(),
        };
        let mut source = SourceState {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            short_commit: "0123456".into(),
            commit_time: 1_700_000_000,
            dirty: false,
            tags_on_head: vec![],
            all_tags: vec![],
            branch: None,
            shallow: false,
        };
        let labels = labels(&package, &source, "v1.2.3");
        let get = |key: &str| {
            labels
                .iter()
                .find(|(name, _)| name == &format!("org.opencontainers.image.{key}"))
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("version"), Some("v1.2.3"));
        assert_eq!(get("created"), Some("2023-11-14T22:13:20Z"));
        assert_eq!(get("revision"), Some(source.commit.as_str()));
        assert_eq!(get("description"), None, "empty values are left out");
        source.dirty = true;
        let dirty = super::labels(&package, &source, "x");
        assert!(dirty.iter().any(|(_, value)| value.ends_with("-dirty")));
    }
}
