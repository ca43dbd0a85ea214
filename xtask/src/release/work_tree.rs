//! What a build reads must be in the release's git work tree: the image is
//! tagged and labelled from that repository's commit, so a context, a
//! Containerfile or an ignore file from elsewhere would be released under a
//! commit that does not hold it (and a context above the repository sends
//! everything beside it to podman: other checkouts, a podman storage).

use std::path::{Path, PathBuf};

/// Where a path of the build came from, for the message: a key of the
/// package's metadata table, or a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// `[package.metadata.container-image]` key of this package.
    Key(&'a str),
    Flag(&'a str),
}

/// A path the build reads, what it is (`the build context`), and where it
/// was given.
pub struct BuildPath<'a> {
    pub what: &'a str,
    pub path: &'a Path,
    pub origin: Origin<'a>,
}

/// `path` with `..` and symbolic links resolved; `None` where it does not
/// exist (that is reported on its own).
fn resolved(path: &Path) -> Option<PathBuf> {
    path.canonicalize().ok()
}

/// The problem with `build_path` if, resolved, it is not inside `root` (the
/// work tree, resolved); the root itself is inside.
pub fn outside(build_path: &BuildPath, root: &Path, package: &str, table: &str) -> Option<String> {
    let path = resolved(build_path.path)?;
    if path.starts_with(root) {
        return None;
    }
    let given = match build_path.origin {
        Origin::Key(key) => format!("`{key}` in [package.metadata.{table}] of {package}"),
        Origin::Flag(flag) => flag.to_owned(),
    };
    let fix = match build_path.origin {
        Origin::Key(key) => format!("point `{key}` at a path inside {}", root.display()),
        Origin::Flag(flag) => format!("pass {flag} a path inside {}", root.display()),
    };
    Some(format!(
        "{} {} (from {given}) is outside the git work tree of {package}, {}: the image is tagged \
         and labelled from that repository's commit, so what it builds must be in it; {fix}",
        build_path.what,
        path.display(),
        root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `base/repo/{crates/app,..}` and `base/sibling`, resolved.
    fn layout(name: &str) -> (Scratch, PathBuf) {
        let base = std::env::temp_dir().join(format!("work-tree-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("repo/crates/app")).unwrap();
        std::fs::create_dir_all(base.join("sibling")).unwrap();
        let base = base.canonicalize().unwrap();
        (Scratch(base.clone()), base)
    }

    fn context(path: &Path) -> BuildPath<'_> {
        BuildPath {
            what: "the build context",
            path,
            origin: Origin::Key("context"),
        }
    }

    #[test]
    fn the_root_and_what_is_under_it_are_inside() {
        let (_scratch, base) = layout("inside");
        let root = base.join("repo");
        for path in [
            root.clone(),
            root.join("crates/app"),
            root.join("crates/app/../.."),
        ] {
            assert_eq!(
                outside(&context(&path), &root, "app", "t"),
                None,
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_parent_or_a_sibling_is_outside_named_with_its_key_or_flag() {
        let (_scratch, base) = layout("outside");
        let root = base.join("repo");
        let parent = root.join("crates/app/../../..");
        let problem = outside(&context(&parent), &root, "greeter", "container-image").unwrap();
        assert!(
            problem.starts_with(&format!(
                "the build context {} (from `context` in [package.metadata.container-image] of \
                 greeter) is outside the git work tree of greeter, {}",
                base.display(),
                root.display()
            )),
            "{problem}"
        );
        assert!(problem.ends_with(&format!(
            "point `context` at a path inside {}",
            root.display()
        )));
        let sibling = root.join("../sibling");
        let flagged = BuildPath {
            what: "the Containerfile",
            path: &sibling,
            origin: Origin::Flag("--file"),
        };
        let problem = outside(&flagged, &root, "greeter", "container-image").unwrap();
        assert!(problem.contains(&format!("{} (from --file)", base.join("sibling").display())));
        assert!(problem.ends_with(&format!("pass --file a path inside {}", root.display())));
    }

    #[test]
    fn a_symbolic_link_out_is_followed() {
        let (_scratch, base) = layout("symlink");
        let root = base.join("repo");
        std::os::unix::fs::symlink(base.join("sibling"), root.join("crates/out")).unwrap();
        let problem = outside(&context(&root.join("crates/out")), &root, "app", "t").unwrap();
        assert!(
            problem.contains(&base.join("sibling").display().to_string()),
            "{problem}"
        );
        // A link that stays inside is inside.
        std::os::unix::fs::symlink(root.join("crates/app"), root.join("crates/in")).unwrap();
        assert_eq!(
            outside(&context(&root.join("crates/in")), &root, "app", "t"),
            None
        );
    }

    #[test]
    fn a_path_that_does_not_exist_is_left_to_its_own_check() {
        let (_scratch, base) = layout("missing");
        let root = base.join("repo");
        assert_eq!(
            outside(&context(&base.join("nowhere")), &root, "app", "t"),
            None
        );
    }
}
