//! Where things are in this repository, and the names the pipeline uses by default.

use std::path::{Path, PathBuf};

/// Where images go when no `--registry` / `--image` (or REGISTRY / IMAGE_NAME) is given.
pub const DEFAULT_REGISTRY: &str = "ghcr.io";
pub const DEFAULT_IMAGE_NAME: &str = "daksha-rc/rc-web";
/// rc-web's Containerfile, relative to the project root; the context is the root.
pub const RC_WEB_CONTAINERFILE: &str = "containers/rc-web/Containerfile";
/// Base image recipes: root filesystems from the Debian archive.
pub const RUNTIME_RECIPE: &str = "containers/base/runtime.json";
pub const DEBIAN_RECIPE: &str = "containers/base/debian.json";
/// The Rust builder base, built FROM the Debian base.
pub const BUILDER_CONTAINERFILE: &str = "containers/rust-builder/Containerfile";
pub const BUILDER_IMAGE: &str = "localhost/rc-base/rust-builder:bookworm";

/// The checkout being released: the nearest directory at or above the
/// working directory that has `xtask/Cargo.toml`, else the one this xtask was
/// compiled from. (So one xtask binary can release another checkout, as the
/// end-to-end tests do with a tagged clone.)
pub fn root() -> PathBuf {
    let is_root = |directory: &Path| {
        directory.join("xtask/Cargo.toml").is_file() && directory.join("Cargo.toml").is_file()
    };
    std::env::current_dir()
        .ok()
        .and_then(|directory| {
            directory
                .ancestors()
                .find(|candidate| is_root(candidate))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask lives one level below the workspace root")
                .to_path_buf()
        })
}

/// Scratch space for generated files (root filesystem tarballs), under `target/`.
pub fn scratch_dir() -> PathBuf {
    root().join("target").join("xtask")
}

/// A private (0700) directory under the system's temporary directory,
/// named for this process, removed with everything in it on drop.
pub struct TemporaryDirectory(PathBuf);

impl TemporaryDirectory {
    pub fn create(prefix: &str) -> anyhow::Result<TemporaryDirectory> {
        use anyhow::Context;
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
