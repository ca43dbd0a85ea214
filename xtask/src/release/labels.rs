//! The OCI labels and annotations every image gets: what it is (from the released
//! package's Cargo metadata) and which source it was built from (from git). Every value
//! is derived from the commit, never from the clock, so two builds of one
//! commit are identical.

use crate::release::git::SourceState;

/// `org.opencontainers.image.*` keys and values, in a stable order.
pub type Labels = Vec<(String, String)>;

/// What the released package's Cargo.toml says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub description: String,
    pub licenses: String,
    pub source: String,
}

/// The label naming the commit an image was built from.
pub const REVISION: &str = "org.opencontainers.image.revision";

/// The revision label among `labels`, if there is one.
pub fn revision(labels: &Labels) -> Option<(&str, &str)> {
    labels
        .iter()
        .find(|(key, _)| key == REVISION)
        .map(|(key, value)| (key.as_str(), value.as_str()))
}

/// The labels for an image of `package` built from `source`, released as `version`.
pub fn labels(package: &Package, source: &SourceState, version: &str) -> Labels {
    [
        ("title", package.name.clone()),
        ("description", package.description.clone()),
        ("licenses", package.licenses.clone()),
        ("source", package.source.clone()),
        ("version", version.to_owned()),
        ("revision", source.revision()),
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
    fn labels_come_from_the_commit_not_the_clock() {
        let package = Package {
            name: "rc-web".into(),
            version: "0.1.0".into(),
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
        assert_eq!(revision(&labels), Some((REVISION, source.commit.as_str())));
        assert_eq!(get("description"), None, "empty values are left out");
        source.dirty = true;
        let dirty = super::labels(&package, &source, "x");
        assert!(dirty.iter().any(|(_, value)| value.ends_with("-dirty")));
    }
}
