//! One build or push per image at a time, across checkouts: two runs that
//! tag or push the same repository would replace each other's lists. The
//! second run refuses at once and names the first.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};

/// Held for the whole command; released when dropped (or when the process dies).
pub struct RepositoryLock {
    file: File,
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
    std::env::temp_dir()
        .join("rc-xtask-locks")
        .join(format!("{name}.lock"))
}

impl RepositoryLock {
    pub fn acquire(repository: &str, what: &str) -> Result<RepositoryLock> {
        let path = lock_path(repository);
        let directory = path.parent().expect("lock files live in a directory");
        std::fs::create_dir_all(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
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
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "pid {}, {what}", std::process::id())?;
        Ok(RepositoryLock { file })
    }
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
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
        let _ = std::fs::remove_file(lock_path(&repository));
    }
}
