//! Where things are in this repository, and the names the pipeline uses by default.

use std::path::{Path, PathBuf};

/// rc-web's Containerfile, relative to the project root; the context is the root.
pub const RC_WEB_CONTAINERFILE: &str = "containers/rc-web/Containerfile";
/// Base image recipes: root filesystems from the Debian archive.
pub const RUNTIME_RECIPE: &str = "containers/base/runtime.json";
pub const DEBIAN_RECIPE: &str = "containers/base/debian.json";
/// The Rust builder base, built FROM the Debian base.
pub const BUILDER_CONTAINERFILE: &str = "containers/rust-builder/Containerfile";
pub const BUILDER_IMAGE: &str = "localhost/rc-base/rust-builder:bookworm";

/// The checkout being worked in: the nearest directory at or above the
/// working directory that has `xtask/Cargo.toml` (this repository, or a
/// clone of it: one binary can release another checkout, as the end-to-end
/// tests do with a tagged clone), else the git work tree the working
/// directory is in (a team's own repository, with the tool installed),
/// else the working directory.
pub fn root() -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(root) = here
        .ancestors()
        .find(|candidate| is_this_repository(candidate))
    {
        return root.to_path_buf();
    }
    git2::Repository::discover(&here)
        .ok()
        .and_then(|repository| repository.workdir().map(Path::to_path_buf))
        .unwrap_or(here)
}

/// Whether `directory` is this repository (or a clone of it).
fn is_this_repository(directory: &Path) -> bool {
    directory.join("xtask/Cargo.toml").is_file() && directory.join("Cargo.toml").is_file()
}

/// How the user runs this tool: `cargo xtask` in this repository (its
/// alias), else the installed binary (`podman-release`).
pub fn command_name() -> &'static str {
    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        if is_this_repository(&root()) {
            "cargo xtask"
        } else {
            env!("CARGO_BIN_NAME")
        }
    })
}

/// `text` (a message naming this repository's `cargo xtask COMMAND`) with
/// the tool named as the user runs it.
pub fn as_invoked(text: &str) -> String {
    text.replace("cargo xtask", command_name())
}

/// The tool's own files, compiled in (`assets/` links to this repository's
/// `containers/`): the base images' definitions and the Rust builder's
/// Containerfile. An installed binary has them wherever it runs.
pub const OWN_FILES: [(&str, &str); 3] = [
    (RUNTIME_RECIPE, include_str!("../assets/base/runtime.json")),
    (DEBIAN_RECIPE, include_str!("../assets/base/debian.json")),
    (
        BUILDER_CONTAINERFILE,
        include_str!("../assets/rust-builder/Containerfile"),
    ),
];

/// Where the tool's own file `relative` (one of [`OWN_FILES`]) is: this
/// repository's, when the tool runs in it (what is edited there is what is
/// used), else the copy compiled in, written under the scratch space (once
/// per content: the file's name is its own).
pub fn own_file(relative: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let root = root();
    let here = root.join(relative);
    if is_this_repository(&root) && here.is_file() {
        return Ok(here);
    }
    let (_, content) = OWN_FILES
        .iter()
        .find(|(path, _)| *path == relative)
        .with_context(|| format!("{relative} is not one of the tool's own files"))?;
    let path = scratch_dir()
        .join("own")
        .join(fingerprint(&[content.as_bytes()]))
        .join(relative);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(*content) {
        let directory = path.parent().context("an own file has no directory")?;
        std::fs::create_dir_all(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// The user this process runs as (podman's storage, locks and scratch
/// space are per user).
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The cargo that runs us (`CARGO`, which cargo sets), else `cargo` on PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Scratch space for generated files (root filesystem tarballs, the list ID
/// a build writes, memos): `target/xtask` of the checkout, or, where this
/// user cannot write there (another user's checkout, a read-only source
/// tree), a directory of this user's under the temporary directory, one per
/// checkout.
pub fn scratch_dir() -> PathBuf {
    let root = root();
    let directory = scratch_dir_for(&root, current_uid(), writable);
    if let Some(mine) = directory.parent().filter(|_| !directory.starts_with(&root)) {
        // Private: what is kept there (podman's facts) steers later runs.
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(mine);
    }
    directory
}

fn scratch_dir_for(root: &Path, uid: u32, writable: impl Fn(&Path) -> bool) -> PathBuf {
    let preferred = root.join("target").join("xtask");
    let nearest_existing = preferred
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(Path::new("/"));
    if writable(nearest_existing) {
        return preferred;
    }
    let checkout = fingerprint(&[root.as_os_str().as_encoded_bytes()]);
    std::env::temp_dir()
        .join(format!("rc-xtask-{uid}"))
        .join(checkout)
}

/// Whether this process may create files in `directory` (access(2), W_OK).
fn writable(directory: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(directory.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// A value worked out from things that rarely change (`podman info`, `cargo
/// metadata`), kept in a file under `target/xtask/` and used while its key
/// (a description of everything the value depends on) is the same and it is
/// younger than `max_age_seconds`. The way cargo keeps `rustc -vV` in
/// `target/.rustc_info.json`.
pub struct Memo {
    file: PathBuf,
    key: String,
    max_age_seconds: u64,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Stored<T> {
    key: String,
    written: u64,
    value: T,
}

impl Memo {
    pub fn new(file: PathBuf, key: String, max_age_seconds: u64) -> Memo {
        Memo {
            file,
            key,
            max_age_seconds,
        }
    }

    /// The kept value; `None` when there is none, it is for another key, too
    /// old, or unreadable.
    pub fn load<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let stored: Stored<T> =
            serde_json::from_str(&std::fs::read_to_string(&self.file).ok()?).ok()?;
        let age = now_seconds().checked_sub(stored.written)?;
        (stored.key == self.key && age < self.max_age_seconds).then_some(stored.value)
    }

    /// Best effort: a value that cannot be kept is worked out again next
    /// time, nothing else. Written aside and renamed, so a concurrent run
    /// reads the old file or the new one.
    pub fn store<T: serde::Serialize>(&self, value: &T) {
        let Some(directory) = self.file.parent() else {
            return;
        };
        let stored = Stored {
            key: self.key.clone(),
            written: now_seconds(),
            value,
        };
        let Ok(text) = serde_json::to_string(&stored) else {
            return;
        };
        let partial = self
            .file
            .with_extension(format!("partial.{}", std::process::id()));
        if std::fs::create_dir_all(directory).is_ok()
            && std::fs::write(&partial, text).is_ok()
            && std::fs::rename(&partial, &self.file).is_err()
        {
            let _ = std::fs::remove_file(&partial);
        }
    }
}

/// A line per file: its size, modification time and inode, or `absent`.
pub fn describe_files(files: &[PathBuf]) -> String {
    use std::fmt::Write;
    use std::os::unix::fs::MetadataExt;
    let mut description = String::new();
    for file in files {
        let _ = match std::fs::metadata(file) {
            Ok(metadata) => writeln!(
                description,
                "{}: {} bytes, modified {}.{}, inode {}",
                file.display(),
                metadata.len(),
                metadata.mtime(),
                metadata.mtime_nsec(),
                metadata.ino()
            ),
            Err(_) => writeln!(description, "{}: absent", file.display()),
        };
    }
    description
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A private (0700) directory under the system's temporary directory,
/// named for this process and its place among this process's (a plan may
/// make two: the one a dry run shows, the one the run uses), removed with
/// everything in it on drop.
pub struct TemporaryDirectory(PathBuf);

impl TemporaryDirectory {
    pub fn create(prefix: &str) -> anyhow::Result<TemporaryDirectory> {
        use anyhow::Context;
        use std::os::unix::fs::DirBuilderExt;
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{made}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create private directory {}", path.display()))?;
        Ok(TemporaryDirectory(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Short hex SHA-256 over the given parts; stable across Rust versions.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_compiled_in_are_this_repositorys_own() {
        // One source of truth: `assets/` links to `containers/`, and the
        // copies an installed binary writes are these.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for (relative, content) in OWN_FILES {
            assert_eq!(
                std::fs::read_to_string(root.join(relative)).unwrap(),
                content,
                "{relative}"
            );
        }
    }

    #[test]
    fn scratch_space_is_the_checkouts_target_unless_this_user_cannot_write_there() {
        let root = Path::new("/srv/checkout");
        let everywhere = |_: &Path| true;
        assert_eq!(
            scratch_dir_for(root, 1000, everywhere),
            Path::new("/srv/checkout/target/xtask")
        );
        let nowhere = |_: &Path| false;
        let fallback = scratch_dir_for(root, 1000, nowhere);
        assert!(fallback.starts_with(std::env::temp_dir().join("rc-xtask-1000")));
        assert_ne!(
            fallback,
            scratch_dir_for(Path::new("/srv/other"), 1000, nowhere)
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("xtask-memo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn file_descriptions_change_with_the_files() {
        let directory = scratch("describe");
        let file = directory.join("storage.conf");
        let absent = describe_files(std::slice::from_ref(&file));
        assert!(absent.ends_with("storage.conf: absent\n"), "{absent}");
        std::fs::write(&file, "[storage]\n").unwrap();
        let present = describe_files(std::slice::from_ref(&file));
        assert_ne!(absent, present);
        std::fs::write(&file, "[storage]\ngraphroot = \"/elsewhere\"\n").unwrap();
        let edited = describe_files(std::slice::from_ref(&file));
        assert_ne!(present, edited);
        assert_eq!(edited, describe_files(&[file]));
        std::fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn a_memo_answers_only_for_its_key_and_age() {
        let directory = scratch("memo");
        let file = directory.join("sub/value.json");
        let memo = Memo::new(file.clone(), "one".into(), 60);
        assert_eq!(memo.load::<String>(), None, "nothing kept yet");
        memo.store(&"kept".to_owned());
        assert_eq!(memo.load::<String>().as_deref(), Some("kept"));
        assert_eq!(
            Memo::new(file.clone(), "two".into(), 60).load::<String>(),
            None
        );
        assert_eq!(
            Memo::new(file.clone(), "one".into(), 0).load::<String>(),
            None,
            "too old"
        );
        std::fs::write(&file, "{").unwrap();
        assert_eq!(memo.load::<String>(), None, "unreadable is a miss");
        std::fs::remove_dir_all(directory).unwrap();
    }

    /// The Containerfile's defaults and the xtask's names must agree, or a plain
    /// `podman build` would look for base images the xtask never makes.
    #[test]
    fn containerfile_defaults_name_the_project_base_images() {
        let containerfile = std::fs::read_to_string(root().join(RC_WEB_CONTAINERFILE)).unwrap();
        assert!(containerfile.contains(&format!("ARG BUILDER_IMAGE={BUILDER_IMAGE}\n")));
        let runtime = crate::base_images::Recipe::load(&root().join(RUNTIME_RECIPE)).unwrap();
        assert!(containerfile.contains(&format!("ARG RUNTIME_IMAGE={}\n", runtime.name)));
        let builder = std::fs::read_to_string(root().join(BUILDER_CONTAINERFILE)).unwrap();
        let debian = crate::base_images::Recipe::load(&root().join(DEBIAN_RECIPE)).unwrap();
        assert!(builder.contains(&format!("ARG DEBIAN_IMAGE={}\n", debian.name)));
    }
}
