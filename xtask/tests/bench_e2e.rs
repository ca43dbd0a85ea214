//! `cargo xtask bench --quick`: every figure's code path runs and reports.

mod support;

use support::*;

#[test]
fn the_quick_benchmark_measures_every_figure_and_writes_its_results() {
    let _serial = serial();
    let directory = scratch_dir("bench");
    let document = directory.join("benchmarks.md");
    std::fs::write(
        &document,
        "# Method\n\n<!-- bench results: written by `cargo xtask bench --output` -->\nold\n<!-- end of bench results -->\n",
    )
    .unwrap();
    let output = xtask_in(
        &repository_root(),
        &["bench", "--quick", "--output", document.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "bench --quick");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let written = std::fs::read_to_string(&document).unwrap();
    assert!(
        written.starts_with("# Method\n"),
        "the method is kept: {written}"
    );
    assert!(!written.contains("\nold\n"), "the old results are replaced");
    let rows: Vec<&str> = written
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| figure"))
        .collect();
    assert_eq!(rows.len(), 12, "{written}");
    for figure in [
        "compile under qemu emulation / cross-compile",
        "rebuild after a one-line change",
        "bytes uploaded to the registry",
        "built without a layer cache (a fresh CI runner)",
        "on a fresh runner (empty storage), with the registry cache / the same without it",
        "the same fresh-runner release, with the cache / the same release on a warm machine",
        "raw podman commands, on a small image: a release's three tags, registry 20 ms away (layers built)",
        "the same, a release's three tags, registry 20 ms away (warm cache)",
        "the same, one tag, registry on loopback (layers built)",
        "the same, one tag, registry on loopback (warm cache)",
        "clean builds, for information",
        "`check-disk-space` / `podman info`, same storage",
    ] {
        let row = rows
            .iter()
            .find(|row| row.contains(figure))
            .unwrap_or_else(|| panic!("no row for {figure}: {written}"));
        assert!(stdout.contains(figure), "printed too: {figure}");
        if figure.contains("check-disk-space") {
            // Its storage of its own: two stages of ten steps, and the base.
            assert!(row.contains("(median; 21 images, "), "{row}");
        }
        // Every figure but the emulated compile (skipped in --quick) and
        // the information row has a number.
        let measured = row.split('|').nth(2).unwrap().trim();
        if figure.contains("qemu") || figure.contains("for information") {
            assert_eq!(measured, "-", "{row}");
        } else {
            assert!(
                measured.trim_end_matches('x').parse::<f64>().is_ok(),
                "{row}"
            );
        }
    }
    // The arm64 toolchain of the full benchmark is kept on purpose (it takes
    // minutes under qemu); everything else the benchmark made is removed.
    let left: Vec<String> = podman(&[
        "images",
        "--filter",
        "reference=localhost/rc-bench/*",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])
    .lines()
    .filter(|name| !name.is_empty() && !name.contains("rust-builder-arm64"))
    .map(str::to_owned)
    .collect();
    assert!(
        left.is_empty(),
        "the benchmark removes its images: {left:?}"
    );
    // Nor is a fresh runner's storage left beside podman's own.
    let graph_root = podman(&["info", "--format", "{{.Store.GraphRoot}}"]);
    let beside = std::path::Path::new(graph_root.trim()).parent().unwrap();
    let storages: Vec<String> = std::fs::read_dir(beside)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("rc-fresh-"))
        .collect();
    assert!(
        storages.is_empty(),
        "left in {}: {storages:?}",
        beside.display()
    );
    let _ = std::fs::remove_dir_all(directory);
}
