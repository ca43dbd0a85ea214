//! Image references: `registry/repository:tag`, checked before anything runs.

use anyhow::{bail, Result};

/// A registry host and a repository in it, e.g. `ghcr.io` + `daksha-rc/rc-web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub registry: String,
    pub path: String,
}

impl Repository {
    /// Checks both parts and reports every problem at once.
    pub fn new(registry: &str, path: &str) -> Result<Repository> {
        let problems: Vec<String> = [validate_registry(registry), validate_path(path)]
            .into_iter()
            .filter_map(|result| result.err().map(|error| error.to_string()))
            .collect();
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(Repository {
            registry: registry.to_owned(),
            path: path.to_owned(),
        })
    }

    /// `ghcr.io/daksha-rc/rc-web`
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name())
    }

    /// A whole repository reference, `host[:port]/path` with no tag (the
    /// registry layer cache's: podman gives it tags of its own).
    pub fn parse(text: &str) -> Result<Repository> {
        let Some((registry, path)) = text.split_once('/') else {
            bail!("{text:?} names no registry; write HOST/PATH, e.g. ghcr.io/acme/app-cache");
        };
        if path.contains(':') || path.contains('@') {
            bail!(
                "{text:?} has a tag or digest; name the repository alone (podman tags the cache \
                 with its own keys), e.g. {}",
                path.split([':', '@'])
                    .next()
                    .map(|path| format!("{registry}/{path}"))
                    .unwrap_or_default()
            );
        }
        Repository::new(registry, path)
    }

    /// The repository beside this one that holds its registry cache:
    /// `ghcr.io/acme/app` → `ghcr.io/acme/app-cache`.
    pub fn cache_beside(&self) -> Repository {
        Repository {
            registry: self.registry.clone(),
            path: format!("{}-cache", self.path),
        }
    }
}

fn validate_registry(registry: &str) -> Result<()> {
    if let Some((scheme, rest)) = registry.split_once("://") {
        bail!(
            "registry {registry:?} has a scheme ({scheme}://); give the host only: --registry {}",
            rest.trim_end_matches('/')
        );
    }
    if registry.is_empty() {
        bail!(
            "the registry is empty; pass --registry HOST[:PORT] (e.g. ghcr.io or 127.0.0.1:5000)"
        );
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    if !host_ok || registry.contains('/') {
        bail!(
            "registry {registry:?} is not a host[:port]; e.g. ghcr.io, quay.io or 127.0.0.1:5000"
        );
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |number| number == 0) {
            bail!("registry {registry:?} has an invalid port {port:?}");
        }
    }
    Ok(())
}

/// Repository paths: lowercase components of `[a-z0-9]+` joined by `.`, `_`, `__` or `-`.
fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() {
        bail!("the image name is empty; pass --image OWNER/NAME (e.g. daksha-rc/rc-web)");
    }
    if path.contains(':') || path.contains('@') {
        bail!("image name {path:?} contains a tag or digest; pass the tag with --tag and the name alone with --image");
    }
    if path.len() > 255 {
        bail!("image name {path:?} is longer than 255 characters");
    }
    for component in path.split('/') {
        if component.bytes().any(|byte| byte.is_ascii_uppercase()) {
            bail!(
                "image name {path:?} has uppercase letters; repository names are lowercase: {}",
                path.to_ascii_lowercase()
            );
        }
        let valid = !component.is_empty()
            && component.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
            })
            && component.starts_with(|character: char| character.is_ascii_alphanumeric())
            && component.ends_with(|character: char| character.is_ascii_alphanumeric())
            && !component.contains("..")
            && !component.contains("---");
        if !valid {
            bail!(
                "image name {path:?}: component {component:?} is not valid; use lowercase letters and \
                 digits, separated by '.', '_' or '-' (e.g. daksha-rc/rc-web)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(registry: &str, path: &str) -> String {
        format!("{:#}", Repository::new(registry, path).unwrap_err())
    }

    #[test]
    fn valid_references_are_joined() {
        let repository = Repository::new("127.0.0.1:5000", "daksha-rc/rc-web").unwrap();
        assert_eq!(
            repository.with_tag("v1.2.3"),
            "127.0.0.1:5000/daksha-rc/rc-web:v1.2.3"
        );
        assert!(Repository::new("ghcr.io", "a/b_c/d.e").is_ok());
        assert!(Repository::new("localhost", "rc-web").is_ok());
    }

    #[test]
    fn a_registry_with_a_scheme_is_refused_with_the_host_to_use() {
        let message = error("https://ghcr.io/", "rc-web");
        assert!(
            message.contains("has a scheme") && message.contains("--registry ghcr.io"),
            "{message}"
        );
    }

    #[test]
    fn both_parts_are_checked_at_once() {
        let message = error("https://ghcr.io", "Bad/Name");
        assert!(
            message.contains("has a scheme") && message.contains("uppercase"),
            "{message}"
        );
    }

    #[test]
    fn bad_registries_and_names_are_refused() {
        assert!(error("ghcr.io/owner", "rc-web").contains("not a host[:port]"));
        assert!(error("127.0.0.1:99999", "rc-web").contains("invalid port"));
        assert!(error("", "rc-web").contains("empty"));
        assert!(error("ghcr.io", "Daksha/RC-Web").contains("lowercase: daksha/rc-web"));
        assert!(error("ghcr.io", "rc web").contains("not valid"));
        assert!(error("ghcr.io", "rc-web:v1").contains("--tag"));
        assert!(error("ghcr.io", "/rc-web").contains("not valid"));
        assert!(error("ghcr.io", "rc-web-").contains("not valid"));
        assert!(error("ghcr.io", "").contains("empty"));
    }

    #[test]
    fn a_cache_repository_is_whole_and_has_no_tag() {
        let beside = Repository::new("ghcr.io", "acme/app")
            .unwrap()
            .cache_beside();
        assert_eq!(beside.name(), "ghcr.io/acme/app-cache");
        assert_eq!(
            Repository::parse("127.0.0.1:5000/acme/app-cache").unwrap(),
            Repository::new("127.0.0.1:5000", "acme/app-cache").unwrap()
        );
        let error = |text: &str| format!("{:#}", Repository::parse(text).unwrap_err());
        assert!(error("app-cache").contains("names no registry"));
        let tagged = error("ghcr.io/acme/app-cache:latest");
        assert!(
            tagged.contains("has a tag") && tagged.contains("e.g. ghcr.io/acme/app-cache"),
            "{tagged}"
        );
        assert!(error("ghcr.io/Acme/app").contains("lowercase"));
    }
}
