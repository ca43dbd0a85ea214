//! `check-disk-space` against a real storage: what it reports is what the
//! storage occupies on disk (measured with `du`), and what it says a clean
//! frees is what `clean-build-cache` then frees. Several images share one
//! large base, where podman 4.3's own figure counts the base once per image.
//!
//! Real podman (the lane's: 4.3 as root and rootless, 5.4 nested), on a
//! storage of the test's own beside the lane's.

mod support;

use std::{
    io::{Read, Write},
    path::Path,
};

use support::*;

const MB: u64 = 1_000_000;

/// `bytes` of random data (incompressible, nothing shared) at `path`.
fn random_file(path: &Path, bytes: u64) {
    let mut source = std::fs::File::open("/dev/urandom").unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    std::io::copy(&mut (&mut source).take(bytes), &mut file).unwrap();
    file.flush().unwrap();
}

/// The bytes the storage's files occupy on disk, as `du` counts them
/// (inside podman's user namespace when rootless: the layers' files belong
/// to the subordinate IDs).
fn du(directory: &Path) -> u64 {
    let directory = directory.to_str().unwrap();
    let output = if run("id", &["-u"]).trim() == "0" {
        run("du", &["-s", "--block-size=1", directory])
    } else {
        podman(&["unshare", "du", "-s", "--block-size=1", directory])
    };
    output.split_whitespace().next().unwrap().parse().unwrap()
}

/// The xtask, run in this repository on `storage`.
fn xtask_on(storage: &FreshStorage, args: &[&str]) -> std::process::Output {
    let env = storage.env();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    xtask_in(&repository_root(), args, &env)
}

fn check(storage: &FreshStorage) -> serde_json::Value {
    let output = xtask_on(storage, &["check-disk-space", "--json"]);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["storage"]["graph_root"],
        storage.graph_root().to_str().unwrap(),
        "the report is the test's storage's"
    );
    report
}

fn figure(report: &serde_json::Value, name: &str) -> u64 {
    report["usage"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage.{name}: {report}"))
}

fn within_ten_percent(reported: u64, real: u64, what: &str) {
    let error = reported.abs_diff(real) as f64 / real as f64;
    eprintln!(
        "{what}: reported {reported}, real {real} ({:.1} % apart)",
        error * 100.0
    );
    assert!(
        error <= 0.10,
        "{what}: reported {reported} bytes, real {real} ({:.1} % apart)",
        error * 100.0
    );
}

#[test]
fn the_reported_usage_is_the_bytes_on_disk_and_a_clean_frees_what_it_said() {
    let storage = FreshStorage::new("disk-usage");
    let directory = scratch_dir("disk-usage");
    // A 60 MB base, and three images of 10 MB each on it: one tagged (kept),
    // two untagged (the build cache).
    let base = directory.join("base");
    std::fs::create_dir_all(&base).unwrap();
    random_file(&base.join("base.bin"), 60 * MB);
    let tarball = directory.join("base.tar");
    run(
        "tar",
        &[
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            base.to_str().unwrap(),
            ".",
        ],
    );
    storage.podman(&[
        "import",
        "--quiet",
        tarball.to_str().unwrap(),
        "localhost/disk-e2e/base:1",
    ]);
    for (name, tag) in [
        ("kept", Some("localhost/disk-e2e/kept:1")),
        ("a", None),
        ("b", None),
    ] {
        random_file(&directory.join(format!("{name}.bin")), 10 * MB);
        let file = directory.join(format!("Containerfile.{name}"));
        std::fs::write(
            &file,
            format!("FROM localhost/disk-e2e/base:1\nCOPY {name}.bin /{name}.bin\n"),
        )
        .unwrap();
        let mut args = vec!["build", "--quiet", "--file", file.to_str().unwrap()];
        if let Some(tag) = tag {
            args.extend(["--tag", tag]);
        }
        args.push(directory.to_str().unwrap());
        storage.podman(&args);
    }

    let before = check(&storage);
    let on_disk_before = du(&storage.graph_root());
    eprintln!(
        "podman's own figure: {} bytes",
        before["podman_usage"]["images_bytes"]
    );
    within_ten_percent(
        figure(&before, "on_disk_bytes"),
        on_disk_before,
        "on disk, against du",
    );
    within_ten_percent(
        figure(&before, "kept_bytes"),
        70 * MB,
        "kept (base and the tagged image)",
    );
    within_ten_percent(
        figure(&before, "clean_frees_bytes"),
        20 * MB,
        "a clean frees (the untagged images)",
    );

    let output = xtask_on(&storage, &["clean-build-cache"]);
    assert!(output.status.success());
    let after = check(&storage);
    let on_disk_after = du(&storage.graph_root());
    within_ten_percent(
        on_disk_before - on_disk_after,
        figure(&before, "clean_frees_bytes"),
        "freed by the clean (du), against what check-disk-space said it would free",
    );
    within_ten_percent(
        figure(&after, "on_disk_bytes"),
        on_disk_after,
        "on disk after the clean, against du",
    );
    assert!(
        figure(&after, "clean_frees_bytes") < MB,
        "nothing more to free: {after}"
    );
    assert!(
        storage
            .podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .contains("localhost/disk-e2e/kept:1"),
        "the tagged image is kept"
    );
    let _ = std::fs::remove_dir_all(directory);
}
