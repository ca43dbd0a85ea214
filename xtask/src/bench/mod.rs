//! `bench`: the pipeline's figures, measured side by side in one run on this
//! machine, printed, and written to docs/benchmarks.md.
//!
//! Everything runs in a throwaway clone of the checkout (edits for the
//! "one-line change" never touch the user's tree), against a registry this
//! command starts on 127.0.0.1 with its own storage (so uploaded bytes are
//! counted where they land). `--quick` runs every figure's code path once on a
//! tiny workload, for CI; it does not produce the published numbers.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    base_images,
    engine::podman,
    exec::{Command, Runner},
    project,
};

mod disk;
mod emulated;
mod fresh_runner;
mod overhead;
mod relay;
mod results;

use crate::engine::scratch_storage::FreshStorage;
use fresh_runner::fresh_runner_figures;
use overhead::wrapper_overhead;
use relay::DelayedRelay;
use results::{machine, rows, splice_results, storage_size, table};

const BENCH_REPOSITORY: &str = "localhost/rc-bench";

#[derive(Debug, Clone)]
pub struct Figure {
    pub name: &'static str,
    /// What the numerator and denominator are, with their values.
    pub numerator: String,
    pub denominator: String,
    pub value: Option<f64>,
    pub target: Target,
    /// How many runs the figure rests on (of each side).
    pub runs: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// A row kept as information, with no target (a retired figure's parts).
    Information,
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(target) => value >= target,
            Target::AtMost(target) => value <= target,
            Target::Information => true,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtLeast(target) => format!(">= {target}"),
            Target::AtMost(target) => format!("<= {target}"),
            Target::Information => "-".into(),
        }
    }
}

impl Figure {
    fn verdict(&self) -> &'static str {
        match self.value {
            _ if matches!(self.target, Target::Information) => "information",
            Some(value) if self.target.met(value) => "met",
            Some(_) => "NOT met",
            None => "not measured",
        }
    }

    fn value_text(&self) -> String {
        match (self.value, self.target) {
            (Some(value), Target::AtLeast(_)) => format!("{value:.1}x"),
            (Some(value), Target::AtMost(target)) if target < 1.0 && target != 0.5 => {
                format!("{value:.3}")
            }
            (Some(value), _) => format!("{value:.3}"),
            (None, _) => "-".into(),
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// What gets built: rc-web itself, or a tiny image for `--quick`.
struct Workload {
    containerfile: PathBuf,
    context: PathBuf,
    /// The file a "one-line change" edits, and the text on the line it
    /// changes (what follows it, up to a quote, is replaced).
    edited: PathBuf,
    edit_marker: &'static str,
    /// A file the first build step copies: changing it leaves no layer of
    /// the workload cached (a cold cache; base images stay).
    cache_key: PathBuf,
    name: &'static str,
    /// Build arguments every build of it gets (the base images it uses,
    /// where they are not the declared ones).
    build_args: Vec<String>,
}

impl Workload {
    /// rc-web itself, in the benchmark's clone.
    fn rc_web(clone: &Path) -> Workload {
        Workload {
            containerfile: clone.join(project::RC_WEB_CONTAINERFILE),
            context: clone.to_path_buf(),
            edited: clone.join("rc-web/src/lib.rs"),
            // The greeting of GET /hello.
            edit_marker: "Hello, {name}!",
            cache_key: clone.join("Cargo.toml"),
            name: "rc-web",
            build_args: Vec::new(),
        }
    }
}

/// The benchmark's registry: the loopback registry the tests use too.
struct LocalRegistry(crate::registry::loopback::LoopbackRegistry);

impl LocalRegistry {
    fn start(directory: &Path) -> Result<LocalRegistry> {
        crate::registry::loopback::LoopbackRegistry::start(directory, None)
            .map(LocalRegistry)
            .map_err(anyhow::Error::msg)
    }

    fn host(&self) -> String {
        self.0.host()
    }

    /// Bytes of every blob the registry stores: what was uploaded to it.
    fn stored_bytes(&self) -> u64 {
        self.0.stored_bytes()
    }
}

struct Bench<'a> {
    runner: &'a Runner,
    clone: PathBuf,
    registry: LocalRegistry,
    workload: Workload,
    runs: usize,
    quick: bool,
    edits: usize,
}

impl Bench<'_> {
    fn xtask(&self, args: &[&str]) -> Command {
        let exe = std::env::current_exe().expect("the running xtask has a path");
        Command::new(exe.to_string_lossy())
            .args(args.iter().copied())
            .current_dir(&self.clone)
    }

    fn build_args(&self, image: &str, tag: &str) -> Vec<String> {
        vec![
            "--registry".into(),
            BENCH_REPOSITORY.split('/').next().unwrap().into(),
            "--image".into(),
            format!("rc-bench/{image}"),
            "--tag".into(),
            tag.into(),
            "--file".into(),
            self.workload.containerfile.to_string_lossy().into_owned(),
            "--context".into(),
            self.workload.context.to_string_lossy().into_owned(),
        ]
        .into_iter()
        .chain(self.workload.build_args.iter().cloned())
        .collect()
    }

    fn timed(&self, command: &Command) -> Result<Duration> {
        let start = Instant::now();
        self.runner.run_prefixed(command, "[bench] ")?;
        Ok(start.elapsed())
    }

    /// [`build`](Self::build), and the CPU time the whole machine spent
    /// meanwhile (podman's containers are not our children, so not in our
    /// rusage): how much work the build was, apart from how long it took.
    fn build_with_cpu(&self, image: &str, tag: &str, extra: &[&str]) -> Result<(Duration, f64)> {
        let before = cpu_busy_seconds();
        let elapsed = self.build(image, tag, extra)?;
        let busy = match (before, cpu_busy_seconds()) {
            (Some(before), Some(after)) => after - before,
            _ => f64::NAN,
        };
        Ok((elapsed, busy))
    }

    fn build(&self, image: &str, tag: &str, extra: &[&str]) -> Result<Duration> {
        let mut args: Vec<String> = vec!["build-image".into()];
        args.extend(self.build_args(image, tag));
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.timed(&self.xtask(&args))
    }

    /// Makes every layer of the workload miss the cache, as on a machine
    /// that never built it (but has the base images).
    fn cold_cache(&mut self) -> Result<()> {
        self.edits += 1;
        let text = std::fs::read_to_string(&self.workload.cache_key)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with("# bench cold cache"))
            .collect();
        std::fs::write(
            &self.workload.cache_key,
            format!(
                "{}\n# bench cold cache {} {}\n",
                kept.join("\n"),
                std::process::id(),
                self.edits
            ),
        )?;
        Ok(())
    }

    /// A one-line change to the workload's source, different every time.
    /// Changes the line holding the workload's marker so that the program
    /// changes (a comment would compile to the same binary and upload nothing).
    fn edit(&mut self) -> Result<()> {
        self.edits += 1;
        let path = &self.workload.edited;
        let marker = self.workload.edit_marker;
        let text = std::fs::read_to_string(path)?;
        let Some(line) = text.lines().find(|line| line.contains(marker)) else {
            bail!("{} has no line with {marker:?} to change", path.display());
        };
        let start = line.find(marker).expect("found above") + marker.len();
        let end = line[start..]
            .find('"')
            .map_or(line.len(), |end| start + end);
        let changed = format!(
            "{}{marker} #{}{}",
            &line[..start - marker.len()],
            self.edits,
            &line[end..]
        );
        std::fs::write(path, text.replacen(line, &changed, 1))?;
        Ok(())
    }

    fn push(&self, image: &str, tag: &str) -> Result<Duration> {
        let remote = format!("{}/rc-bench/{image}:{tag}", self.registry.host());
        let local = format!("{BENCH_REPOSITORY}/{image}:{tag}");
        let start = Instant::now();
        self.runner.run(
            &Command::new(podman::PROGRAM)
                .args(["manifest", "push", "--all", "--tls-verify=false", &local])
                .arg(format!("docker://{remote}")),
        )?;
        Ok(start.elapsed())
    }

    /// Pushes the release `tag` and sets what the registry's storage grew by
    /// against every byte of the release (figure 3).
    fn upload_figure(&self, name: &'static str, tag: &str) -> Result<Figure> {
        let before = self.registry.stored_bytes();
        self.push("release", tag)?;
        let uploaded = self.registry.stored_bytes() - before;
        let total =
            self.release_bytes(&format!("{}/rc-bench/release:{tag}", self.registry.host()))?;
        Ok(Figure {
            name,
            numerator: format!("new bytes in the registry's storage: {uploaded}"),
            denominator: format!("index, manifests, configs and layers of the release: {total}"),
            value: Some(uploaded as f64 / total as f64),
            target: Target::AtMost(0.05),
            runs: "1".into(),
        })
    }

    /// Commits everything changed in the clone, an hour after its HEAD: the
    /// next build is a release of its own, dated anew (`--timestamp`).
    fn commit(&self, message: &str) -> Result<()> {
        let repository = git2::Repository::open(&self.clone)?;
        let mut index = repository.index()?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree = repository.find_tree(index.write_tree()?)?;
        let parent = repository.head()?.peel_to_commit()?;
        let time = git2::Time::new(parent.committer().when().seconds() + 3600, 0);
        let signature = git2::Signature::new("rc-bench", "rc-bench@example.invalid", &time)?;
        repository.commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &[&parent],
        )?;
        Ok(())
    }

    /// Bytes of everything the list `remote` consists of: its index, each
    /// image's manifest, config and layers, as the registry stores them.
    fn release_bytes(&self, remote: &str) -> Result<u64> {
        let inspect = |reference: &str| -> Result<serde_json::Value> {
            let raw = self.runner.read(&Command::new("skopeo").args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ]))?;
            Ok(serde_json::from_str(&raw)?)
        };
        let index = inspect(remote)?;
        let repository = remote.rsplit_once(':').map_or(remote, |(name, _)| name);
        let mut total = serde_json::to_vec(&index)?.len() as u64;
        for entry in index["manifests"].as_array().context("not an index")? {
            total += entry["size"].as_u64().unwrap_or(0);
            let manifest = inspect(&format!(
                "{repository}@{}",
                entry["digest"].as_str().unwrap_or_default()
            ))?;
            total += manifest["config"]["size"].as_u64().unwrap_or(0);
            for layer in manifest["layers"].as_array().into_iter().flatten() {
                total += layer["size"].as_u64().unwrap_or(0);
            }
        }
        Ok(total)
    }
}

pub fn run(flags: &crate::flags::Bench) -> Result<Vec<Figure>> {
    let runner = Runner::new(false);
    let info = crate::engine::info::Info::read(&runner)?;
    let build_platform = info.build_platform()?;
    base_images::ensure(&runner, build_platform, false, None)?;
    let scratch = project::TemporaryDirectory::create("rc-bench")?;
    let clone = scratch.path().join("clone");
    git2::Repository::clone(&project::root().to_string_lossy(), &clone)
        .context("cannot clone the checkout for the benchmark")?;
    let workload = match flags.quick {
        true => tiny_workload(&clone.join("target/rc-bench/tiny"))?,
        false => Workload::rc_web(&clone),
    };
    let registry = LocalRegistry::start(&scratch.path().join("registry"))?;
    let runs = if flags.quick { 1 } else { flags.runs.max(1) };
    let mut bench = Bench {
        runner: &runner,
        clone,
        registry,
        workload,
        runs,
        quick: flags.quick,
        edits: 0,
    };
    let mut figures = Vec::new();
    if flags.figure.is_some() {
        // One value is accepted (`6`).
        figures.push(disk::figure(&bench, &scratch.path().join("disk"))?);
        return Ok(figures);
    }

    // Clean builds from a cold cache, base images present: each alone, then
    // both at once (last, so that the rebuilds below start from its cache).
    let engine_only = flags.engine_only;
    let mut each_alone = None;
    if !engine_only {
        bench.cold_cache()?;
        let amd64 = bench.build_with_cpu("amd64", "clean", &["--platform", "linux/amd64"])?;
        bench.cold_cache()?;
        let arm64 = bench.build_with_cpu("arm64", "clean", &["--platform", "linux/arm64"])?;
        each_alone = Some((amd64, arm64));
    }
    bench.cold_cache()?;
    let (both_clean, both_cpu) = bench.build_with_cpu("both", "clean", &[])?;

    if let Some((_, (arm64_clean, _))) = each_alone {
        figures.extend(emulated::figures(&bench, build_platform, arm64_clean)?);
    }
    figures.push(rebuild_figure(&mut bench, both_clean)?);
    if !engine_only {
        figures.extend(upload_figures(&mut bench)?);
    }
    // 7 and 8. A release on a fresh runner, with and without the registry
    // cache, and against the same release on a warm machine.
    figures.extend(fresh_runner_figures(&mut bench)?);

    figures.extend(overhead_figures(&bench)?);
    if let Some(((amd64_clean, amd64_cpu), (arm64_clean, arm64_cpu))) = each_alone {
        figures.push(clean_builds_figure(
            (both_clean, both_cpu),
            (amd64_clean, amd64_cpu),
            (arm64_clean, arm64_cpu),
        ));
    }
    // 6. check-disk-space against podman info on a storage of its own.
    figures.push(disk::figure(&bench, &scratch.path().join("disk"))?);
    remove_bench_images(&runner);
    Ok(figures)
}

/// Figure 4, the xtask's build-and-push / the same podman commands by hand: a
/// release (its three tags, to a registry some way off), then one tag to
/// the registry on loopback, each with every layer built and warm.
fn overhead_figures(bench: &Bench) -> Result<Vec<Figure>> {
    let small = tiny_workload(&bench.clone.join("target/rc-bench/small"))?;
    let mut figures = Vec::new();
    for release in [true, false] {
        figures.push(wrapper_overhead(bench, &small, release, true)?);
        figures.push(wrapper_overhead(bench, &small, release, false)?);
    }
    Ok(figures)
}

/// 2. Rebuild after a one-line change / clean build.
fn rebuild_figure(bench: &mut Bench, both_clean: Duration) -> Result<Figure> {
    let mut rebuilds = Vec::new();
    for _ in 0..bench.runs {
        bench.edit()?;
        rebuilds.push(bench.build("both", "clean", &[])?);
    }
    let rebuild = median(rebuilds);
    Ok(Figure {
        name:
            "rebuild after a one-line change to rc-web source / clean build (base images present)",
        numerator: format!(
            "rebuild of {}, both platforms: {} (median)",
            bench.workload.name,
            seconds(rebuild)
        ),
        denominator: format!("clean build, both platforms: {}", seconds(both_clean)),
        value: Some(rebuild.as_secs_f64() / both_clean.as_secs_f64()),
        target: Target::AtMost(0.10),
        runs: format!("{} rebuilds, 1 clean build", bench.runs),
    })
}

/// Figure 3: the bytes uploaded for a release after a one-line change
/// against its total bytes, where it was built and on a fresh machine.
fn upload_figures(bench: &mut Bench) -> Result<Vec<Figure>> {
    bench.build("release", "r1", &[])?;
    bench.push("release", "r1")?;
    bench.edit()?;
    bench.build("release", "r2", &[])?;
    let here = bench.upload_figure(
        "bytes uploaded to the registry for that release / total image bytes",
        "r2",
    )?;
    // The same on a fresh machine (GitHub's hosted runners): no layer cache,
    // and the release a commit of its own, so every layer the build makes is
    // dated anew.
    bench.edit()?;
    bench.commit("bench: the next release")?;
    bench.build("release", "r3", &["--no-cache"])?;
    let fresh = bench.upload_figure(
        "the same, the release a new commit built without a layer cache (a fresh CI runner)",
        "r3",
    )?;
    Ok(vec![here, fresh])
}

/// The clean builds' work, as information (the retired figure 5: both at
/// once against each alone has a floor on 2 cores, measured at 0.895 in
/// CPU-seconds: the same compile either way).
fn clean_builds_figure(
    (both_clean, both_cpu): (Duration, f64),
    (amd64_clean, amd64_cpu): (Duration, f64),
    (arm64_clean, arm64_cpu): (Duration, f64),
) -> Figure {
    Figure {
        name: "clean builds, for information: wall time and CPU-seconds of the machine",
        numerator: format!(
            "both platforms at once: {} ({both_cpu:.0} CPU-seconds)",
            seconds(both_clean)
        ),
        denominator: format!(
            "amd64 alone {} ({amd64_cpu:.0} CPU-seconds), arm64 alone {} ({arm64_cpu:.0} \
             CPU-seconds)",
            seconds(amd64_clean),
            seconds(arm64_clean)
        ),
        value: None,
        target: Target::Information,
        runs: "1 each".into(),
    }
}

/// A tiny two-platform image with a RUN step, for `--quick`.
fn tiny_workload(directory: &Path) -> Result<Workload> {
    std::fs::create_dir_all(directory)?;
    std::fs::write(
        directory.join("Containerfile"),
        "ARG BUILDPLATFORM\nARG TARGETPLATFORM\n\
         FROM --platform=$BUILDPLATFORM localhost/rc-base/debian:bookworm AS build\n\
         COPY source.txt /src/source.txt\n\
         RUN mkdir /out && sha256sum /src/source.txt > /out/built\n\
         FROM --platform=$TARGETPLATFORM localhost/rc-base/runtime:bookworm\n\
         COPY --from=build /out /out\n",
    )?;
    std::fs::write(directory.join("source.txt"), "tiny\n")?;
    Ok(Workload {
        containerfile: directory.join("Containerfile"),
        context: directory.to_path_buf(),
        edited: directory.join("source.txt"),
        edit_marker: "tiny",
        cache_key: directory.join("source.txt"),
        name: "tiny",
        // Its build stage is the Debian base, not the declared Rust builder:
        // so the fresh runner's release neither keeps nor loads the builder.
        build_args: vec![
            "--build-arg".into(),
            "BUILDER_IMAGE=localhost/rc-base/debian:bookworm".into(),
        ],
    })
}

/// Seconds of CPU time the machine has spent busy since boot, all CPUs
/// together (`/proc/stat`: user, nice, system, irq, softirq and steal).
fn cpu_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = busy_ticks(stat.lines().next()?)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// Busy ticks of the `cpu` line of /proc/stat: every field but idle and iowait.
fn busy_ticks(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = values.try_into().ok()?;
    Some(user + nice + system + irq + softirq + steal)
}

fn remove_bench_images(runner: &Runner) {
    let Ok(names) = runner.read(&Command::new(podman::PROGRAM).args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])) else {
        return;
    };
    // localhost/rc-bench/... and the pushed lists, named after the
    // benchmark registry's 127.0.0.1:port.
    let bench_path = BENCH_REPOSITORY
        .split_once('/')
        .map_or(BENCH_REPOSITORY, |(_, path)| path);
    for name in names.lines().filter(|name| {
        name.split_once('/')
            .is_some_and(|(_, path)| path.starts_with(&format!("{bench_path}/")))
            && !name.contains("rust-builder-arm64")
    }) {
        // Lists (the builds) and plain images (the emulated build).
        if !runner
            .run_quietly(&podman::manifest_remove(name))
            .unwrap_or(false)
        {
            let _ = runner.run_quietly(&Command::new(podman::PROGRAM).args(["rmi", name]));
        }
    }
}

/// The figures that depend on the engine (2, 4, the fresh-runner
/// release), measured by this xtask in the podman 5 lane's engine (Debian
/// 13's podman 5.4, nested), as rows of the table.
fn podman5_rows(flags: &crate::flags::Bench, runner: &Runner) -> Result<String> {
    let exe = std::env::current_exe().context("the running xtask has no path")?;
    let directory = exe.parent().context("the xtask has no directory")?;
    let (nested, archive) = crate::lane::start_podman5(runner, &[directory.to_path_buf()])?;
    let wrap = |program: &str, args: &[String]| nested.exec(program, args);
    let prefix = "[podman 5] ";
    crate::lane::prepare_engine(runner, prefix, (&exe, &archive), wrap)?;
    let file = project::scratch_dir().join("bench-podman5-rows.md");
    let _ = std::fs::remove_file(&file);
    let mut args: Vec<String> = ["bench", "--engine-only", "--runs"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    args.push(flags.runs.to_string());
    args.push("--rows".into());
    args.push(file.to_string_lossy().into_owned());
    if flags.quick {
        args.push("--quick".into());
    }
    if let Some(figure) = &flags.figure {
        args.extend(["--figure".into(), figure.clone()]);
    }
    runner.run_prefixed(&wrap(&exe.to_string_lossy(), &args), prefix)?;
    let rows = std::fs::read_to_string(&file)
        .with_context(|| format!("the lane's benchmark wrote no {}", file.display()))?;
    let _ = std::fs::remove_file(&file);
    Ok(rows)
}

impl crate::flags::Bench {
    pub fn run(self) -> Result<()> {
        let started = Instant::now();
        // podman's own calls slow down as its storage grows (figures 4 and 6
        // most), so the size it started from goes with the results.
        let runner = Runner::new(false);
        let storage = storage_size(&runner);
        let figures = run(&self)?;
        if let Some(file) = &self.rows {
            let version = runner
                .read(&podman::version())
                .map(|version| version.trim().to_owned())
                .unwrap_or_default();
            std::fs::write(file, rows(&figures, &format!(" [podman {version}]")))
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        let mut table = table(&figures);
        for lane in &self.lanes {
            // One value is accepted (`podman5`).
            eprintln!("bench: the engine's figures again, in the {lane} lane");
            table.push_str(&podman5_rows(&self, &runner)?);
        }
        let machine = format!("{}, {storage} at the start", machine(&runner));
        println!("\n{table}");
        println!(
            "machine: {machine}; the whole run took {}",
            seconds(started.elapsed())
        );
        if let Some(output) = &self.output {
            let results = format!(
                "Written by `cargo xtask bench{}` on {}. Machine: {machine}. Whole run: {}.\n\n{table}",
                if self.quick { " --quick" } else { "" },
                crate::release::git::rfc3339_utc(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|elapsed| elapsed.as_secs() as i64)
                        .unwrap_or(0)
                ),
                seconds(started.elapsed()),
            );
            let text = splice_results(
                &std::fs::read_to_string(output).unwrap_or_default(),
                &results,
            );
            std::fs::write(output, text)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("bench: results written to {}", output.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_cpu_time_leaves_out_idle_and_iowait() {
        assert_eq!(
            busy_ticks("cpu  100 2 30 5000 40 5 6 7 0 0"),
            Some(100 + 2 + 30 + 5 + 6 + 7)
        );
        assert_eq!(busy_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(busy_ticks("cpu 1 2"), None);
        assert!(cpu_busy_seconds().is_some_and(|seconds| seconds > 0.0));
    }

    #[test]
    fn medians_and_verdicts() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), ms(3));
        assert!(Target::AtMost(0.15).met(0.15) && !Target::AtMost(0.15).met(0.2));
        assert!(Target::AtLeast(10.0).met(12.0) && !Target::AtLeast(10.0).met(9.9));
    }
}
