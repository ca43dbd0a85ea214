//! One build or push per image at a time, across checkouts: two runs that
//! tag or push the same repository would replace each other's lists. The
//! second run refuses at once and names the first.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};

/// Held for the whole command; released when dropped (or when the process
/// dies). Dropping it removes the file too: a run leaves nothing behind.
pub struct RepositoryLock {
    file: File,
    path: PathBuf,
}

pub fn lock_path(repository: &str) -> PathBuf {
    let name: String = repository
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '_'
            }
        })
        .collect();
    locks_directory().join(format!("{name}.lock"))
}

/// One directory per user: each user has a podman storage of their own (so
/// two users never contend for one list), and a directory made by one user
/// must not stop another (root's `/tmp/rc-xtask-locks` refused a rootless
/// user's lock). `XDG_RUNTIME_DIR` when the session has one (private to the
/// user), else a per-uid directory in the temporary directory.
fn locks_directory() -> PathBuf {
    let uid = crate::project::current_uid();
    locks_directory_for(uid, std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
}

fn locks_directory_for(uid: u32, runtime_dir: Option<PathBuf>) -> PathBuf {
    match runtime_dir.filter(|directory| directory.is_absolute() && directory.is_dir()) {
        Some(directory) => directory.join("rc-xtask-locks"),
        None => std::env::temp_dir().join(format!("rc-xtask-locks-{uid}")),
    }
}

/// Set by a run for the runs it starts itself (`build-and-push --builder`
/// runs one `push-by-digest` per builder): its process ID, as the holder of
/// the lock they work under.
pub const HELD_BY_PARENT: &str = "XTASK_LOCK_HELD_BY";

/// Whether the process that started this one holds the lock for it.
pub fn held_by_parent() -> bool {
    std::env::var(HELD_BY_PARENT)
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::os::unix::process::parent_id())
}

impl RepositoryLock {
    pub fn acquire(repository: &str, what: &str) -> Result<RepositoryLock> {
        let path = lock_path(repository);
        let directory = path.parent().expect("lock files live in a directory");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .with_context(|| format!("cannot create {}", directory.display()))?;
        }
        // A holder removes the file when it is done, so the file opened here
        // may be gone from the directory by the time it is locked: lock
        // again until the locked file is the one the path names.
        let mut attempts = 0;
        let mut file = loop {
            attempts += 1;
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    bail!(
                        "another cargo xtask ({}) is building or pushing {repository} right now; wait for it \
                         to finish (or stop it), then run again. Lock: {}",
                        holder.trim(),
                        path.display()
                    );
                }
                Err(std::fs::TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            use std::os::unix::fs::MetadataExt;
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(locked), Ok(named)) => {
                    locked.ino() == named.ino() && locked.dev() == named.dev()
                }
                _ => false,
            };
            if same {
                break file;
            }
            if attempts == 5 {
                bail!("cannot lock {}: it keeps being replaced", path.display());
            }
        };
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "pid {}, {what}", std::process::id())?;
        Ok(RepositoryLock { file, path })
    }
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        // Removed while still locked: a run waiting on this file finds it
        // unlinked after locking it, and locks the path's new file instead.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let repository = format!("127.0.0.1:1/lock-test-{}", std::process::id());
        let first = RepositoryLock::acquire(&repository, "build-image").unwrap();
        let error = RepositoryLock::acquire(&repository, "push-image")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!("pid {}, build-image", std::process::id())),
            "{error}"
        );
        drop(first);
        let again = RepositoryLock::acquire(&repository, "push-image");
        assert!(again.is_ok(), "released on drop");
        drop(again);
        assert!(
            !lock_path(&repository).exists(),
            "a run leaves no lock file behind"
        );
    }

    #[test]
    fn each_user_has_a_lock_directory_of_their_own() {
        let temporary = std::env::temp_dir();
        assert_eq!(
            locks_directory_for(1000, None),
            temporary.join("rc-xtask-locks-1000")
        );
        assert_ne!(
            locks_directory_for(0, None),
            locks_directory_for(1000, None)
        );
        // A session's runtime directory is private to its user: used when it exists.
        assert_eq!(
            locks_directory_for(1000, Some(temporary.clone())),
            temporary.join("rc-xtask-locks")
        );
        let missing = temporary.join(format!("rc-no-runtime-dir-{}", std::process::id()));
        assert_eq!(
            locks_directory_for(1000, Some(missing)),
            temporary.join("rc-xtask-locks-1000")
        );
    }
}
