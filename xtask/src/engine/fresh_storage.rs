//! An empty podman storage beside the real one, as a fresh CI runner has:
//! the pure parts shared by the benchmark (`bench/`) and the tests
//! (`tests/support`, which include this file by `#[path]`, so it uses the
//! standard library only). Every podman and skopeo a command runs uses the
//! storage `CONTAINERS_STORAGE_CONF` names.

use std::path::{Path, PathBuf};

/// Where a fresh storage named `leaf` goes: beside podman's graph root and
/// run root (the same kind of filesystem; the nested lane's container has
/// its storage on a volume, not on its own overlay root).
pub fn beside(graph_root: &Path, run_root: &Path, leaf: &str) -> Option<(PathBuf, PathBuf)> {
    Some((
        graph_root.parent()?.join(leaf),
        run_root.parent()?.join(leaf),
    ))
}

/// The `storage.conf` of a fresh storage in `directory`, with `driver`.
/// Rootless podman takes its graph root from `rootless_storage_path` in a
/// file `CONTAINERS_STORAGE_CONF` names (it ignores `graphroot` there, and
/// would use the user's own storage), and keeps its default run root.
pub fn storage_conf(driver: &str, directory: &Path, run_root: &Path) -> String {
    let graph_root = directory.join("storage");
    format!(
        "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{0}\"\nrunroot = \"{1}\"\n\
         rootless_storage_path = \"{0}\"\n",
        graph_root.display(),
        run_root.display()
    )
}

/// What is mounted under `roots` (from `/proc/self/mountinfo`), deepest
/// first: what containers/storage left mounted over its own directories,
/// to unmount before the directories go.
pub fn mount_points_under(mountinfo: &str, roots: &[&Path]) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| roots.iter().any(|root| Path::new(point).starts_with(root)))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_the_storage_are_found_deepest_first() {
        let mountinfo = "\
            22 1 0:21 / / rw - ext4 /dev/vda rw\n\
            90 22 0:50 / /var/lib/containers/fresh rw - ext4 /dev/vda rw\n\
            91 90 0:51 / /var/lib/containers/fresh/storage/overlay rw - overlay o rw\n\
            92 22 0:52 / /var/lib/containers/storage/overlay rw - overlay o rw\n";
        let fresh = Path::new("/var/lib/containers/fresh");
        assert_eq!(
            mount_points_under(mountinfo, &[fresh]),
            [
                "/var/lib/containers/fresh/storage/overlay",
                "/var/lib/containers/fresh"
            ]
        );
        let (directory, run) = beside(
            Path::new("/var/lib/containers/storage"),
            Path::new("/run/containers/storage"),
            "fresh",
        )
        .unwrap();
        assert_eq!(directory, fresh);
        let conf = storage_conf("overlay", &directory, &run);
        assert!(conf.contains(
            "graphroot = \"/var/lib/containers/fresh/storage\"\nrunroot = \"/run/containers/fresh\""
        ));
        assert!(conf.contains("rootless_storage_path = \"/var/lib/containers/fresh/storage\""));
    }
}
