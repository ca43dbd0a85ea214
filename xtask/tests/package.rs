//! The tool is a crate others install: `cargo package` passes (it builds
//! from the packaged files alone), and the package holds what the binary
//! carries: the base images' definitions and the Rust builder's
//! Containerfile, as files with their content (not links out of it).

mod support;

use std::process::Command;

use support::repository_root;

#[test]
fn the_crate_packages_and_carries_its_own_files() {
    let root = repository_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = root.join("target/package-check");
    let output = Command::new(&cargo)
        .args([
            "package",
            "--package",
            "podman-release",
            "--allow-dirty",
            "--quiet",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo package: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    let unpacked = target.join(format!("package/podman-release-{version}"));
    for (inside, here) in [
        ("assets/base/runtime.json", "containers/base/runtime.json"),
        ("assets/base/debian.json", "containers/base/debian.json"),
        (
            "assets/rust-builder/Containerfile",
            "containers/rust-builder/Containerfile",
        ),
        ("assets/init/release.yml", "xtask/assets/init/release.yml"),
    ] {
        let packaged = unpacked.join(inside);
        assert!(
            !packaged.is_symlink(),
            "{inside} is packaged as a file, not a link"
        );
        assert_eq!(
            std::fs::read_to_string(&packaged).unwrap(),
            std::fs::read_to_string(root.join(here)).unwrap(),
            "{inside}"
        );
    }
}
