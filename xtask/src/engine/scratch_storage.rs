//! An empty podman storage beside this machine's, as a fresh CI runner
//! has (the benchmark's fresh-runner figures, `reproduce`'s rebuild): every
//! podman a command given to [`FreshStorage::applied`] runs uses it.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{
    engine::podman,
    exec::{Command, Runner},
    project,
};

/// An empty podman storage beside this machine's (a fresh CI runner's):
/// a command given to [`FreshStorage::applied`] uses it
/// (`CONTAINERS_STORAGE_CONF`, every podman and skopeo it runs). Beside
/// the real one, so that it is on the same kind of filesystem. Removed on
/// drop.
pub struct FreshStorage<'a> {
    runner: &'a Runner,
    directory: PathBuf,
    run_root: PathBuf,
    conf: PathBuf,
}

impl<'a> FreshStorage<'a> {
    pub fn new(runner: &'a Runner, name: &str) -> Result<FreshStorage<'a>> {
        use crate::engine::fresh_storage;
        let info = crate::engine::info::Info::read(runner)?;
        let leaf = format!("rc-fresh-{name}-{}", std::process::id());
        let (directory, run_root) =
            fresh_storage::beside(&info.store.graph_root, &info.store.run_root, &leaf)
                .context("podman's storage is at the root of the filesystem")?;
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        let conf = directory.join("storage.conf");
        std::fs::write(
            &conf,
            fresh_storage::storage_conf(&info.store.graph_driver_name, &directory, &run_root),
        )?;
        Ok(FreshStorage {
            runner,
            directory,
            run_root,
            conf,
        })
    }

    pub fn applied(&self, command: Command) -> Command {
        command.env("CONTAINERS_STORAGE_CONF", self.conf.to_string_lossy())
    }
}

impl Drop for FreshStorage<'_> {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in crate::engine::fresh_storage::mount_points_under(
            &mounts,
            &[&self.directory, &self.run_root],
        ) {
            let _ = self.runner.succeeds(&Command::new("umount").arg(point));
        }
        for path in [&self.directory, &self.run_root] {
            if project::current_uid() != 0 {
                // Files of the subordinate IDs: removable in podman's user
                // namespace only.
                let _ = self.runner.succeeds(
                    &Command::new(podman::PROGRAM)
                        .args(["unshare", "rm", "-rf"])
                        .arg(path.to_string_lossy()),
                );
            }
            if let Err(error) = std::fs::remove_dir_all(path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: cannot remove {}: {error}", path.display());
                }
            }
        }
    }
}
