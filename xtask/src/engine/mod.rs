//! The podman this run talks to, read once (`podman info`), and the ways
//! podman versions and setups differ, as named capabilities. Code that must
//! behave differently asks one of these predicates; no other module compares
//! podman versions.
//!
//! Differences the pipeline handles the same way on every version, so that
//! no predicate is needed (each has a unit test where it is handled):
//! - `podman system df --format json`: numbers in `Size`/`Reclaimable` up to
//!   4.3, text for people from 4.4 with the numbers in `RawSize`/
//!   `RawReclaimable` (`podman::parse_podman_usage` reads either).
//! - `LIST@DIGEST` names a list entry's image up to 4.6 only; from 4.7
//!   (containers/common 0.56) the repository must be one of the image's own
//!   names, and an entry's image has none. Entries are addressed by image ID,
//!   found through `podman images` (`entries::image_ids`).
//! - From 5.6 an exported `SOURCE_DATE_EPOCH` becomes `--source-date-epoch`
//!   and clashes with `--timestamp`: builds run with it removed from
//!   podman's environment, its value given as `--timestamp` instead.
//! - From 5.1 a push no longer keeps Docker v2s2 manifests unless asked:
//!   every push names its `--format`.
//! - podman 5 prints a manifest list with several names once per name in
//!   `podman images --format json` (`clean::images` keeps each ID once).
//! - 5.6 dropped the `io.buildah.version` label: the same commit built by two
//!   podman versions gives different digests (by one version, the same).

mod destination;
pub mod fresh_storage;
pub mod info;
pub mod local_list;
pub mod podman;
pub mod scratch_storage;
pub mod storage;

use anyhow::Result;

pub use destination::Destination;

use crate::{exec::Runner, platform::Platform};

/// Where this machine keeps its CA bundle (Debian's), which builds mount
/// for cargo's downloads (a TLS-inspecting proxy's CA among them).
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The oldest podman whose multi-platform `build --manifest` we rely on.
pub const MINIMUM_VERSION: semver::Version = semver::Version::new(4, 3, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub version: semver::Version,
    /// The platform podman builds on: the VM's for a remote client.
    pub build_platform: Platform,
    pub rootless: bool,
    /// A remote client: podman runs elsewhere (podman machine's VM).
    pub remote: bool,
    /// The storage driver: `overlay`, or `vfs` (a full copy per layer).
    pub storage_driver: String,
    pub cgroups_v1: bool,
    /// podman's run root (`podman info`'s `store.runRoot`).
    pub run_root: std::path::PathBuf,
    /// How many user IDs a rootless user's containers have: 1 without
    /// subordinate IDs (`/etc/subuid`), 65537 with Debian's default range.
    pub mapped_uids: u64,
}

impl Engine {
    /// The engine, asked once per process (see [`info::Info::read`]).
    pub fn read(runner: &Runner) -> Result<&'static Engine> {
        static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
        if let Some(engine) = ENGINE.get() {
            return Ok(engine);
        }
        let info = info::Info::read(runner)?;
        let engine = Engine::from_info(info, info.podman_version(runner)?)?;
        Ok(ENGINE.get_or_init(|| engine))
    }

    pub fn from_info(info: &info::Info, version: semver::Version) -> Result<Engine> {
        Ok(Engine {
            version,
            build_platform: info.build_platform()?,
            rootless: info.host.security.rootless,
            remote: info.host.service_is_remote,
            storage_driver: info.store.graph_driver_name.clone(),
            cgroups_v1: info.host.cgroup_version == "v1",
            run_root: info.store.run_root.clone(),
            mapped_uids: info
                .host
                .id_mappings
                .as_ref()
                .and_then(|mappings| mappings.uidmap.as_ref())
                .map_or(0, |uidmap| uidmap.iter().map(|map| map.size).sum()),
        })
    }

    /// `podman system df` counts each layer once in its images' figure
    /// (containers/common 0.51, podman 4.4: "DiskUsage: return total images
    /// size"); up to 4.3 a layer counts once for every image that shares it.
    pub fn system_df_counts_each_layer_once(&self) -> bool {
        self.version >= semver::Version::new(4, 4, 0)
    }

    /// The host CA bundle, when podman runs on this host (not in a VM).
    pub fn host_ca_bundle(&self) -> Option<std::path::PathBuf> {
        let bundle = std::path::PathBuf::from(HOST_CA_BUNDLE);
        (self.shares_this_host() && bundle.is_file()).then_some(bundle)
    }

    /// Multi-platform `build --manifest` that the pipeline relies on (4.3).
    pub fn builds_manifest_lists(&self) -> bool {
        self.version >= MINIMUM_VERSION
    }

    /// podman runs on this machine, so this machine's paths are podman's: the
    /// CA bundle can be mounted into builds, qemu's registration here is
    /// podman's, and the filesystem of its storage can be measured here.
    /// False for a remote client (podman machine's VM on macOS).
    pub fn shares_this_host(&self) -> bool {
        !self.remote && std::env::consts::OS == "linux"
    }

    /// Whether `build --manifest --iidfile F` writes the list's ID to F.
    /// A remote client (4.3, checked) writes the last image's ID instead,
    /// so the list is then found by its name.
    pub fn writes_list_id_file(&self) -> bool {
        !self.remote
    }

    /// Storage that copies every layer in full (the `vfs` driver, where
    /// rootless podman falls back when overlay is not available): about a
    /// hundred times the disk of overlay (podman#18197).
    pub fn copies_every_layer(&self) -> bool {
        self.storage_driver == "vfs"
    }

    /// A rootless user without subordinate IDs: its containers have one
    /// user, and an image with files of other owners (any Debian base)
    /// cannot be unpacked.
    pub fn lacks_subordinate_ids(&self) -> bool {
        // 0: podman printed no mappings (nothing to go by).
        self.rootless && self.shares_this_host() && self.mapped_uids == 1
    }

    /// The runtime directory other containers tools (skopeo) must be given
    /// when the session has none (`XDG_RUNTIME_DIR` unset: `su`, `runuser`,
    /// cron, no logind). Rootless podman then makes its own (the parent of
    /// its run root, `/tmp/podman-run-UID`) and keeps `containers/auth.json`
    /// there; skopeo would look in root's `/run/containers/UID` and stop at
    /// "permission denied". `None` where nothing needs setting.
    pub fn runtime_dir_for_tools(&self, session_has_one: bool) -> Option<std::path::PathBuf> {
        if !self.rootless || !self.shares_this_host() || session_has_one {
            return None;
        }
        self.run_root.parent().map(std::path::Path::to_path_buf)
    }

    /// Whether the registry layer cache is looked up after an `ARG` inside a
    /// stage. buildah 1.28 (podman 4.3, Debian 12) never looks an `ARG`
    /// step up there, and builds every later step of that stage again
    /// (checked: steps before it came from the cache, the `RUN` after it
    /// did not). Fixed in buildah 1.29 (podman 4.4; buildah#4315, #4326).
    pub fn looks_up_cache_after_arg(&self) -> bool {
        self.version >= semver::Version::new(4, 4, 0)
    }

    /// RUN steps reach the network through a tap device that rootless podman
    /// makes (slirp4netns up to 4.x, pasta from 5.0): they need to open
    /// `/dev/net/tun`.
    pub fn needs_tun_device(&self) -> bool {
        self.rootless && self.shares_this_host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> info::Info {
        info::Info::parse(json).unwrap()
    }

    #[test]
    fn the_engine_is_read_from_podman_info() {
        // Trimmed from podman 5.4.2's `podman info --format json`, rootless.
        let rootless = info(
            r#"{"host":{"arch":"amd64","os":"linux","cgroupVersion":"v1",
                "security":{"rootless":true},"serviceIsRemote":false,
                "idMappings":{"gidmap":[{"container_id":0,"host_id":1001,"size":1}],
                              "uidmap":[{"container_id":0,"host_id":1001,"size":1},
                                        {"container_id":1,"host_id":100000,"size":65536}]}},
               "store":{"graphRoot":"/home/u/.local/share/containers/storage","graphDriverName":"vfs",
                        "runRoot":"/tmp/podman-run-1001/containers"},
               "version":{"Version":"5.4.2"}}"#,
        );
        let engine = Engine::from_info(&rootless, semver::Version::new(5, 4, 2)).unwrap();
        assert!(engine.rootless && engine.cgroups_v1 && !engine.remote);
        assert_eq!(engine.build_platform, Platform::LINUX_AMD64);
        assert!(engine.copies_every_layer());
        assert!(engine.builds_manifest_lists());
        assert_eq!(engine.mapped_uids, 65537);
        assert!(!engine.lacks_subordinate_ids());
        let without_subordinate_ids = Engine {
            mapped_uids: 1,
            ..engine.clone()
        };
        if std::env::consts::OS == "linux" {
            assert!(without_subordinate_ids.lacks_subordinate_ids());
            assert!(engine.needs_tun_device());
            // podman's own runtime directory, for skopeo, when the session has none.
            assert_eq!(
                engine.runtime_dir_for_tools(false),
                Some(std::path::PathBuf::from("/tmp/podman-run-1001"))
            );
            assert_eq!(engine.runtime_dir_for_tools(true), None);
        }
        // podman 4.3 as root on overlay: none of the rootless concerns.
        let rootful = info(
            r#"{"host":{"arch":"arm64","os":"linux","cgroupVersion":"v2","security":{"rootless":false},
                "idMappings":{"gidmap":null,"uidmap":null}},
               "store":{"graphRoot":"/var/lib/containers/storage","graphDriverName":"overlay"}}"#,
        );
        let engine = Engine::from_info(&rootful, semver::Version::new(4, 3, 1)).unwrap();
        assert!(!engine.rootless && !engine.cgroups_v1);
        assert_eq!(engine.runtime_dir_for_tools(false), None, "root's is /run");
        assert!(!engine.lacks_subordinate_ids(), "root maps every ID");
        assert!(!engine.copies_every_layer() && !engine.needs_tun_device());
        assert_eq!(engine.build_platform, Platform::LINUX_ARM64);
    }

    #[test]
    fn a_remote_client_does_not_share_this_host() {
        // podman machine on macOS: a remote client of a rootless VM.
        let remote = info(
            r#"{"host":{"arch":"arm64","os":"linux","security":{"rootless":true},"serviceIsRemote":true},
               "store":{"graphRoot":"/var/home/core/.local/share/containers/storage","graphDriverName":"overlay"}}"#,
        );
        let engine = Engine::from_info(&remote, semver::Version::new(5, 2, 0)).unwrap();
        assert!(!engine.shares_this_host());
        assert!(
            !engine.needs_tun_device(),
            "the VM's /dev/net/tun is not ours to check"
        );
    }

    #[test]
    fn podman_older_than_4_3_cannot_build_the_lists() {
        let old = info(r#"{"host":{"arch":"amd64","os":"linux"},"store":{"graphRoot":"/s"}}"#);
        let engine = Engine::from_info(&old, semver::Version::new(4, 2, 0)).unwrap();
        assert!(!engine.builds_manifest_lists());
    }

    #[test]
    fn only_podman_4_4_and_later_look_the_cache_up_after_an_arg() {
        let json = info(r#"{"host":{"arch":"amd64","os":"linux"},"store":{"graphRoot":"/s"}}"#);
        let engine = |minor| Engine::from_info(&json, semver::Version::new(4, minor, 1)).unwrap();
        assert!(!engine(3).looks_up_cache_after_arg(), "Debian 12's 4.3.1");
        assert!(engine(4).looks_up_cache_after_arg());
        assert!(engine(9).looks_up_cache_after_arg(), "Ubuntu 24.04's 4.9.3");
    }
}
