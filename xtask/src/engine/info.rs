//! What `podman info` says, read once per process and kept between runs
//! (`info_memo()`): the engine's platform, user, storage and version.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::podman::{info, parse_version, version, PROGRAM};
use crate::platform::Platform;

/// What `podman info --format json` says that we use.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Info {
    pub host: HostInfo,
    pub store: StoreInfo,
    /// Absent from old podman's output; then `podman version` is asked.
    #[serde(default)]
    pub version: Option<VersionInfo>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    pub graph_root: PathBuf,
    /// `overlay`, `vfs`, ...
    #[serde(default)]
    pub graph_driver_name: String,
    /// Where podman keeps per-boot state: `$XDG_RUNTIME_DIR/containers` for
    /// a rootless user (podman makes `/tmp/podman-run-UID` when unset).
    #[serde(default)]
    pub run_root: PathBuf,
    /// Size and use of the filesystem holding `graph_root`, as podman sees it
    /// (inside the VM on macOS).
    #[serde(default)]
    pub graph_root_allocated: Option<u64>,
    #[serde(default)]
    pub graph_root_used: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    pub arch: String,
    pub os: String,
    /// `v1` or `v2`.
    #[serde(default)]
    pub cgroup_version: String,
    #[serde(default)]
    pub security: SecurityInfo,
    /// True for a remote client (`podman --remote`, podman machine on macOS).
    #[serde(default)]
    pub service_is_remote: bool,
    /// How a rootless user's IDs map to the host's (root: none printed).
    #[serde(default)]
    pub id_mappings: Option<IdMappings>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IdMappings {
    /// `null` for root.
    #[serde(default)]
    pub uidmap: Option<Vec<IdMap>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IdMap {
    pub size: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityInfo {
    #[serde(default)]
    pub rootless: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct VersionInfo {
    #[serde(rename = "Version")]
    pub version: String,
}

/// How long `podman info` may take: a local podman answers within a second,
/// a remote one within a few; one that has not answered by then is not
/// going to (a VM or a machine that went away, a stopped service).
pub const ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Info {
    /// `podman info`, asked once per process, and on Linux remembered between
    /// runs while podman and its configuration stay the same (see
    /// [`info_memo`]): it takes a quarter of a second, as long as the rest of
    /// a warm build-and-push of a small image.
    pub fn read(runner: &crate::exec::Runner) -> Result<&'static Info> {
        static INFO: std::sync::OnceLock<Info> = std::sync::OnceLock::new();
        if let Some(info) = INFO.get() {
            return Ok(info);
        }
        // macOS and Windows: podman runs in a VM whose disk figures (used by
        // the disk check) change, so it is asked every time.
        let cache = (std::env::consts::OS == "linux").then(info_memo).flatten();
        let kept = cache
            .as_ref()
            .and_then(|cache| cache.load::<Info>())
            .filter(|info| !info.host.service_is_remote);
        let info = match kept {
            Some(info) => info,
            None => {
                let info = Info::parse(&runner.read_within(&info(), ANSWER_LIMIT).context(
                    "podman did not answer; is its service running? (`podman machine start` \
                     on macOS; for CONTAINER_HOST or a connection, the podman.socket of the \
                     machine it names)",
                )?)?;
                // A remote engine is not kept: it can change (another
                // version, other storage) while nothing here does, and its
                // disk figures are the only measure of its storage.
                if let Some(cache) = cache.as_ref().filter(|_| !info.host.service_is_remote) {
                    cache.store(&info.without_disk_figures());
                }
                info
            }
        };
        Ok(INFO.get_or_init(|| info))
    }

    /// What is kept between runs: no disk figures (they change; on Linux the
    /// disk check measures them itself).
    fn without_disk_figures(&self) -> Info {
        Info {
            store: StoreInfo {
                graph_root_allocated: None,
                graph_root_used: None,
                ..self.store.clone()
            },
            ..self.clone()
        }
    }

    /// podman's version: from `podman info`, or asked when it does not say.
    pub fn podman_version(&self, runner: &crate::exec::Runner) -> Result<semver::Version> {
        match &self.version {
            Some(version) => parse_version(&version.version),
            None => parse_version(&runner.read(&version())?),
        }
    }

    pub fn parse(json: &str) -> Result<Info> {
        serde_json::from_str(json).context("cannot parse `podman info --format json`")
    }

    /// The platform podman builds on: the VM's on macOS, the host's on Linux.
    pub fn build_platform(&self) -> Result<Platform> {
        format!("{}/{}", self.host.os, self.host.arch)
            .parse()
            .with_context(|| {
                format!(
                    "podman runs on {}/{}, which rc-web's images do not support",
                    self.host.os, self.host.arch
                )
            })
    }
}

const INFO_MEMO_MAX_AGE_SECONDS: u64 = 24 * 60 * 60;

/// Environment variables that change where podman keeps things or how it is
/// configured.
const INFO_MEMO_VARIABLES: &[&str] = &[
    "CONTAINERS_CONF",
    "CONTAINERS_CONF_OVERRIDE",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "STORAGE_DRIVER",
    "STORAGE_OPTS",
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_RUNTIME_DIR",
];

/// Where `podman info` is remembered between runs (a
/// [`Memo`](crate::project::Memo) under `target/xtask/`), keyed on everything
/// that can change its answer here: the podman binary (path, size,
/// modification time, inode), the user, the environment variables podman
/// reads its configuration and storage from, and the configuration files
/// themselves. Any change, or a day, and podman is asked again. `None` when
/// podman is not on PATH (nothing to key on).
fn info_memo() -> Option<crate::project::Memo> {
    let program = which::which(PROGRAM).ok()?;
    let variable = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let home = variable("HOME").unwrap_or_default();
    let config_home = variable("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    let mut files = vec![
        program,
        PathBuf::from("/etc/containers/storage.conf"),
        PathBuf::from("/usr/share/containers/storage.conf"),
        PathBuf::from("/etc/containers/containers.conf"),
        PathBuf::from("/etc/containers/containers.conf.d"),
        PathBuf::from("/usr/share/containers/containers.conf"),
        config_home.join("containers/storage.conf"),
        config_home.join("containers/containers.conf"),
        config_home.join("containers/containers.conf.d"),
    ];
    for name in [
        "CONTAINERS_CONF",
        "CONTAINERS_CONF_OVERRIDE",
        "CONTAINERS_STORAGE_CONF",
    ] {
        files.extend(variable(name));
    }
    Some(crate::project::Memo::new(
        crate::project::scratch_dir().join("podman-info.json"),
        info_memo_key(
            crate::project::current_uid(),
            INFO_MEMO_VARIABLES
                .iter()
                .map(|name| (*name, std::env::var_os(name))),
            &files,
        ),
        INFO_MEMO_MAX_AGE_SECONDS,
    ))
}

fn info_memo_key<'a>(
    uid: u32,
    variables: impl Iterator<Item = (&'a str, Option<std::ffi::OsString>)>,
    files: &[PathBuf],
) -> String {
    // The format of what is kept: a memo of an older xtask lacks fields
    // (rootless, storage driver) that would read as defaults.
    let mut key = format!("format=4\nuid={uid}\n");
    for (name, value) in variables {
        key.push_str(&format!("{name}={value:?}\n"));
    }
    key + &crate::project::describe_files(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_gives_the_build_platform() {
        let json = r#"{"host":{"arch":"amd64","os":"linux"},"store":{"graphRoot":"/var/lib/containers/storage","graphRootAllocated":100}}"#;
        let info = Info::parse(json).unwrap();
        assert_eq!(info.build_platform().unwrap(), Platform::LINUX_AMD64);
        assert_eq!(
            info.store.graph_root,
            PathBuf::from("/var/lib/containers/storage")
        );
        assert_eq!(info.store.graph_root_allocated, Some(100));
    }

    #[test]
    fn info_gives_podman_version_when_it_has_one() {
        let json = r#"{"host":{"arch":"arm64","os":"linux"},"store":{"graphRoot":"/s"},
            "version":{"APIVersion":"4.3.1","Version":"4.3.1","OsArch":"linux/arm64"}}"#;
        let info = Info::parse(json).unwrap();
        let runner = crate::exec::Runner::new(false);
        assert_eq!(
            info.podman_version(&runner).unwrap(),
            semver::Version::new(4, 3, 1)
        );
    }

    #[test]
    fn info_cache_key_follows_variables_user_and_files() {
        let files = [PathBuf::from("/nonexistent/storage.conf")];
        let variables = |value: &str| {
            vec![(
                "CONTAINERS_STORAGE_CONF",
                Some(std::ffi::OsString::from(value)),
            )]
            .into_iter()
        };
        let key = info_memo_key(0, variables("a"), &files);
        assert!(key.contains("/nonexistent/storage.conf: absent"), "{key}");
        assert_eq!(key, info_memo_key(0, variables("a"), &files));
        assert_ne!(key, info_memo_key(0, variables("b"), &files));
        assert_ne!(key, info_memo_key(1000, variables("a"), &files));
    }

    #[test]
    fn info_cache_keeps_no_disk_figures() {
        let info = Info::parse(
            r#"{"host":{"arch":"amd64","os":"linux"},"store":{"graphRoot":"/s","graphRootUsed":5},"version":{"Version":"4.3.1"}}"#,
        )
        .unwrap();
        let kept = info.without_disk_figures();
        let text = serde_json::to_string(&kept).unwrap();
        let back: Info = serde_json::from_str(&text).unwrap();
        assert_eq!(back.store.graph_root, PathBuf::from("/s"));
        assert_eq!(back.store.graph_root_used, None);
        assert_eq!(back.version.as_ref().unwrap().version, "4.3.1");
        assert_eq!(back.build_platform().unwrap(), Platform::LINUX_AMD64);
    }
}
