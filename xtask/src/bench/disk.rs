//! Figure 6: `check-disk-space` against `podman info`, side by side on one
//! busy storage, a storage of the benchmark's own with about 250 images on
//! one large base (as a day of builds leaves them: each build step an
//! image), so the figure does not depend on what the machine's storage holds.

use std::{
    io::{Read, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{median, seconds, Bench, Figure, FreshStorage, Target};
use crate::{
    disk::format_bytes,
    engine::podman,
    exec::{Command, Runner},
};

/// Stages of the storage's build, each of [`STEPS`] `COPY` steps (an image
/// each): 25 stages give 250 images, and the base.
const STAGES: usize = 25;
const QUICK_STAGES: usize = 2;
const STEPS: usize = 10;
const BASE_BYTES: u64 = 100_000_000;
const QUICK_BASE_BYTES: u64 = 5_000_000;

fn random_file(path: &Path, bytes: u64) -> Result<()> {
    let mut source = std::fs::File::open("/dev/urandom")?;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::io::copy(&mut (&mut source).take(bytes), &mut file)?;
    Ok(file.flush()?)
}

/// The base (random bytes, imported) and every stage's steps, built once.
fn populate(runner: &Runner, storage: &FreshStorage, directory: &Path, quick: bool) -> Result<()> {
    let (stages, base_bytes) = match quick {
        true => (QUICK_STAGES, QUICK_BASE_BYTES),
        false => (STAGES, BASE_BYTES),
    };
    let base = directory.join("base");
    std::fs::create_dir_all(&base)?;
    random_file(&base.join("base.bin"), base_bytes)?;
    let tarball = directory.join("base.tar");
    runner.run(&Command::new("tar").args([
        "-cf",
        &tarball.to_string_lossy(),
        "-C",
        &base.to_string_lossy(),
        ".",
    ]))?;
    runner.run(&storage.applied(Command::new(podman::PROGRAM).args([
        "import",
        "--quiet",
        &tarball.to_string_lossy(),
        "localhost/rc-bench/disk-base:1",
    ])))?;
    let mut containerfile = String::new();
    for stage in 0..stages {
        containerfile.push_str(&format!(
            "FROM localhost/rc-bench/disk-base:1 AS s{stage}\n"
        ));
        for step in 0..STEPS {
            let name = format!("f{}", stage * STEPS + step);
            std::fs::write(directory.join(&name), format!("{name}\n"))?;
            containerfile.push_str(&format!("COPY {name} /{name}\n"));
        }
    }
    let file = directory.join("Containerfile");
    std::fs::write(&file, containerfile)?;
    runner.run(&storage.applied(Command::new(podman::PROGRAM).args([
        "build",
        "--quiet",
        "--layers",
        "--skip-unused-stages=false",
        "--tag",
        "localhost/rc-bench/disk-last:1",
        "--file",
        &file.to_string_lossy(),
        &directory.to_string_lossy(),
    ])))
}

fn timed_quietly(runner: &Runner, command: &Command) -> Result<Duration> {
    let start = Instant::now();
    runner.read(command)?;
    Ok(start.elapsed())
}

pub fn figure(bench: &Bench, directory: &Path) -> Result<Figure> {
    let storage = FreshStorage::new(bench.runner, "disk")?;
    std::fs::create_dir_all(directory)?;
    populate(bench.runner, &storage, directory, bench.quick)?;
    let info = storage.applied(Command::new(podman::PROGRAM).args(["info"]));
    let check = storage.applied(bench.xtask(&["check-disk-space", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&bench.runner.read(&check)?)
        .context("check-disk-space --json printed no JSON")?;
    let mut infos = Vec::new();
    let mut checks = Vec::new();
    // Side by side: one of each in turn, so that both see the same machine.
    for _ in 0..bench.runs.max(5) {
        infos.push(timed_quietly(bench.runner, &info)?);
        checks.push(timed_quietly(bench.runner, &check)?);
    }
    let (info, check) = (median(infos), median(checks.clone()));
    let usage = &report["usage"];
    let figure = |name: &str| usage[name].as_u64().map_or("unknown".into(), format_bytes);
    Ok(Figure {
        name: "`check-disk-space` / `podman info`, same storage",
        numerator: format!(
            "{} (median; {} images, {} on disk by its count, podman's own figure {})",
            seconds(check),
            usage["images"],
            figure("on_disk_bytes"),
            report["podman_usage"]["images_bytes"]
                .as_u64()
                .map_or("unknown".into(), format_bytes),
        ),
        denominator: format!("{} (median)", seconds(info)),
        value: Some(check.as_secs_f64() / info.as_secs_f64()),
        target: Target::AtMost(2.0),
        runs: checks.len().to_string(),
    })
}
