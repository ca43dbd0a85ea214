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

/// A TCP relay on 127.0.0.1 to another port there that holds every chunk for
/// `delay` in each direction: a registry `2 × delay` of round trip away, as
/// one across the internet is, with no limit on bandwidth. Stopped on drop.
struct DelayedRelay {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl DelayedRelay {
    fn start(target: u16, delay: Duration) -> Result<DelayedRelay> {
        use std::{net::TcpStream, sync::atomic::Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(("127.0.0.1", target)))
                else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                        Self::pump(from, to, delay);
                    }
                }
            }
        });
        Ok(DelayedRelay {
            port,
            stop,
            accept: Some(accept),
        })
    }

    /// Copies `from` to `to`, each chunk `delay` after it arrived; ends (and
    /// closes `to` for writing) when `from` does.
    fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
        use std::io::{Read, Write};
        let (sender, receiver) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(read) = from.read(&mut buffer) {
                if read == 0
                    || sender
                        .send((Instant::now() + delay, buffer[..read].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, chunk) in receiver {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayedRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
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
    let info = podman::Info::read(&runner)?;
    let build_platform = info.build_platform()?;
    base_images::ensure(&runner, build_platform, false, None)?;
    let scratch = project::TemporaryDirectory::create("rc-bench")?;
    let clone = scratch.path().join("clone");
    git2::Repository::clone(&project::root().to_string_lossy(), &clone)
        .context("cannot clone the checkout for the benchmark")?;
    let workload = if flags.quick {
        tiny_workload(&clone.join("target/rc-bench/tiny"))?
    } else {
        Workload {
            containerfile: clone.join(project::RC_WEB_CONTAINERFILE),
            context: clone.clone(),
            edited: clone.join("rc-web/src/lib.rs"),
            // The greeting of GET /hello.
            edit_marker: "Hello, {name}!",
            cache_key: clone.join("Cargo.toml"),
            name: "rc-web",
            build_args: Vec::new(),
        }
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

    // 4. The xtask's build-and-push / the same podman commands by hand.
    let small = tiny_workload(&bench.clone.join("target/rc-bench/small"))?;
    // A release (its three tags, to a registry some way off), then one tag
    // to the registry on loopback.
    for release in [true, false] {
        figures.push(wrapper_overhead(&bench, &small, release, true)?);
        figures.push(wrapper_overhead(&bench, &small, release, false)?);
    }
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

/// A release of a one-line change on a fresh runner (an empty podman
/// storage, as every job of release.yml starts with; the registry holds the
/// release before it and its cache), from nothing to pushed and read back
/// (`build-and-push`, both platforms); the same without the cache (base
/// images made from the Debian archive, every layer built); and the same
/// release on a warm machine. In `--quick`, the fresh storage without the
/// cache is given the base images first, untimed (making them takes
/// minutes), so that only the layer cache is compared there.
fn fresh_runner_figures(bench: &mut Bench) -> Result<Vec<Figure>> {
    let host = bench.registry.host();
    let (file, context) = (
        bench.workload.containerfile.to_string_lossy().into_owned(),
        bench.workload.context.to_string_lossy().into_owned(),
    );
    let (exe, clone) = (std::env::current_exe()?, bench.clone.clone());
    let build_args = bench.workload.build_args.clone();
    let release = |tag: &str, cache: bool| -> Command {
        let mut args = vec![
            "build-and-push",
            "--registry",
            &host,
            "--image",
            "rc-bench/fresh",
            "--tag",
            tag,
            "--tls-verify",
            "false",
            "--no-sign",
            "--file",
            &file,
            "--context",
            &context,
        ];
        if cache {
            args.push("--cache-repo");
        }
        Command::new(exe.to_string_lossy())
            .args(args)
            .args(build_args.iter().cloned())
            .current_dir(&clone)
    };
    // The release before: it fills the cache (its layers, the base images).
    bench.runner.run(&release("previous", true))?;
    bench.edit()?;
    bench.commit("bench: a release on a fresh runner")?;

    let cached = FreshStorage::new(bench.runner, "cached")?;
    let with_cache = bench.timed(&cached.applied(release("fresh-cached", true)))?;
    drop(cached);
    let uncached = FreshStorage::new(bench.runner, "uncached")?;
    if bench.quick {
        let engine = crate::engine::Engine::read(bench.runner)?;
        let archive = crate::lane::base_images_archive(bench.runner, engine)?;
        bench.runner.run(&uncached.applied(bench.xtask(&[
            "base-images",
            "--import",
            &archive.to_string_lossy(),
        ])))?;
    }
    let without_cache = bench.timed(&uncached.applied(release("fresh-uncached", false)))?;
    drop(uncached);
    let warm = bench.timed(&release("warm", false))?;
    let what = if bench.quick {
        "the base images loaded first"
    } else {
        "base images made from the Debian archive, every layer built"
    };
    Ok(vec![
        Figure {
            name: "a release of a one-line change on a fresh runner (empty storage), with the \
                   registry cache / the same without it",
            numerator: format!(
                "build-and-push --cache-repo of {}, both platforms, from an empty storage to \
                 pushed and read back: {}",
                bench.workload.name,
                seconds(with_cache)
            ),
            denominator: format!(
                "the same without the cache ({what}): {}",
                seconds(without_cache)
            ),
            value: Some(with_cache.as_secs_f64() / without_cache.as_secs_f64()),
            target: Target::AtMost(0.25),
            runs: "1 each".into(),
        },
        Figure {
            name: "the same fresh-runner release, with the cache / the same release on a warm \
                   machine",
            numerator: format!("fresh runner, with the cache: {}", seconds(with_cache)),
            denominator: format!(
                "build-and-push of the same commit where the release before was built: {}",
                seconds(warm)
            ),
            value: Some(with_cache.as_secs_f64() / warm.as_secs_f64()),
            target: Target::AtMost(1.5),
            runs: "1 each".into(),
        },
    ])
}

/// An empty podman storage beside this machine's (a fresh CI runner's):
/// a command given to [`FreshStorage::applied`] uses it
/// (`CONTAINERS_STORAGE_CONF`, every podman and skopeo it runs). Beside
/// the real one, so that it is on the same kind of filesystem. Removed on
/// drop.
struct FreshStorage<'a> {
    runner: &'a Runner,
    directory: PathBuf,
    run_root: PathBuf,
    conf: PathBuf,
}

impl<'a> FreshStorage<'a> {
    fn new(runner: &'a Runner, name: &str) -> Result<FreshStorage<'a>> {
        use crate::engine::fresh_storage;
        let info = podman::Info::read(runner)?;
        let leaf = format!("rc-bench-fresh-{name}-{}", std::process::id());
        let (directory, run_root) =
            fresh_storage::beside(&info.store.graph_root, &info.store.run_root, &leaf)
                .context("podman's storage is at the root of the filesystem")?;
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        let conf = directory.join("storage.conf");
        std::fs::write(
            &conf,
            fresh_storage::storage_conf(&info.store.graph_driver_name, &directory, &run_root),
        )?;
        Ok(FreshStorage {
            runner,
            directory,
            run_root,
            conf,
        })
    }

    fn applied(&self, command: Command) -> Command {
        command.env("CONTAINERS_STORAGE_CONF", self.conf.to_string_lossy())
    }
}

impl Drop for FreshStorage<'_> {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in crate::engine::fresh_storage::mount_points_under(
            &mounts,
            &[&self.directory, &self.run_root],
        ) {
            let _ = self.runner.succeeds(&Command::new("umount").arg(point));
        }
        for path in [&self.directory, &self.run_root] {
            if project::current_uid() != 0 {
                // Files of the subordinate IDs: removable in podman's user
                // namespace only.
                let _ = self.runner.succeeds(
                    &Command::new(podman::PROGRAM)
                        .args(["unshare", "rm", "-rf"])
                        .arg(path.to_string_lossy()),
                );
            }
            if let Err(error) = std::fs::remove_dir_all(path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("bench: warning: cannot remove {}: {error}", path.display());
                }
            }
        }
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

/// The tags of a release (figure 4): its version, its commit, `latest`.
const RELEASE_TAGS: &[&str] = &["v1.0.0", "0123abc", "latest"];

/// How far off the registry of figure 4's release rows is, each way: 20 ms
/// of round trip, a registry in the same region. (The one on loopback
/// answers in microseconds, which no registry a release goes to does.)
const REGISTRY_DELAY: Duration = Duration::from_millis(10);

/// Builds and pushes of the workload, through the xtask and by hand,
/// alternating; the medians compared. A `release` has three tags and goes
/// to the registry through a [`DelayedRelay`]; else one tag, on loopback.
fn wrapper_overhead(bench: &Bench, small: &Workload, release: bool, cold: bool) -> Result<Figure> {
    let tags = if release { RELEASE_TAGS } else { &["t"] };
    let tag_list = tags.join(",");
    let relay = if release {
        Some(DelayedRelay::start(bench.registry.0.port, REGISTRY_DELAY)?)
    } else {
        None
    };
    let host = &relay
        .as_ref()
        .map_or_else(|| bench.registry.host(), DelayedRelay::host);
    let (file, context) = (
        small.containerfile.to_string_lossy().into_owned(),
        small.context.to_string_lossy().into_owned(),
    );
    let mut nonce = 0;
    let mut cold_cache = || -> Result<()> {
        if cold {
            nonce += 1;
            std::fs::write(
                &small.cache_key,
                format!("small image, cold build {nonce}\n"),
            )?;
        }
        Ok(())
    };
    // The raw side runs exactly the `podman build` the xtask runs (same
    // labels, annotations, timestamp, build arguments), as its dry run prints
    // it, then pushes the list: the same work without the wrapper.
    let plan = bench.runner.read(&bench.xtask(&[
        "build-image",
        "--dry-run",
        "--registry",
        "localhost",
        "--image",
        "rc-bench/raw",
        "--tag",
        &tag_list,
        "--file",
        &file,
        "--context",
        &context,
    ]))?;
    let raw_build = plan
        .lines()
        .find(|line| line.contains("podman build "))
        .context("the dry run printed no podman build")?;
    // Less the file the xtask reads the list's ID from: by hand, nobody
    // would write it (and the dry run did not make its directory).
    let raw_build = without_option(raw_build, "--iidfile");
    let list = raw_build
        .split_whitespace()
        .skip_while(|word| *word != "--manifest")
        .nth(1)
        .context("the podman build has no --manifest")?
        .to_owned();
    let mut by_xtask = Vec::new();
    let mut by_hand = Vec::new();
    // One untimed round of each first: both start warm.
    for round in 0..=bench.runs {
        let xtask = bench.xtask(&[
            "build-and-push",
            "--registry",
            host,
            "--image",
            "rc-bench/wrapped",
            "--tag",
            &tag_list,
            "--tls-verify",
            "false",
            "--file",
            &file,
            "--context",
            &context,
        ]);
        cold_cache()?;
        let elapsed = bench.timed(&xtask)?;
        cold_cache()?;
        let start = Instant::now();
        if bench.runner.succeeds(&podman::manifest_exists(&list))? {
            bench.runner.run(&podman::manifest_remove(&list))?;
        }
        bench.runner.run(
            &Command::new("sh")
                .args(["-c", &raw_build])
                .current_dir(&bench.clone),
        )?;
        // One push per tag, one after the other, as a script runs them.
        for tag in tags {
            bench.runner.run(
                &Command::new(podman::PROGRAM)
                    .args(["manifest", "push", "--all", "--tls-verify=false", &list])
                    .arg(format!("docker://{host}/rc-bench/raw:{tag}")),
            )?;
        }
        if round > 0 {
            by_xtask.push(elapsed);
            by_hand.push(start.elapsed());
        }
    }
    let (xtask, hand) = (median(by_xtask), median(by_hand));
    Ok(Figure {
        name: match (release, cold) {
            (true, true) => "the xtask's build-and-push / the equivalent raw podman commands, on a small image: a release's three tags, registry 20 ms away (layers built)",
            (true, false) => "the same, a release's three tags, registry 20 ms away (warm cache)",
            (false, true) => "the same, one tag, registry on loopback (layers built)",
            (false, false) => "the same, one tag, registry on loopback (warm cache)",
        },
        numerator: format!(
            "cargo xtask build-and-push --tag {tag_list} ({}): {} (median)",
            if cold {
                "every layer built"
            } else {
                "warm cache"
            },
            seconds(xtask)
        ),
        denominator: format!(
            "the same podman build (from the xtask's dry run) + {}: {} (median)",
            if release {
                "a podman manifest push per tag"
            } else {
                "podman manifest push"
            },
            seconds(hand)
        ),
        value: Some(xtask.as_secs_f64() / hand.as_secs_f64()),
        target: Target::AtMost(if release { 1.03 } else { 1.10 }),
        runs: format!("{} each, alternating, after one warm-up", bench.runs),
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

/// `line` without `option` and the word after it.
fn without_option(line: &str, option: &str) -> String {
    let mut words = Vec::new();
    let mut skip = false;
    for word in line.split(' ') {
        if skip {
            skip = false;
        } else if word == option {
            skip = true;
        } else {
            words.push(word);
        }
    }
    words.join(" ")
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

const RESULTS_BEGIN: &str = "<!-- bench results: written by `cargo xtask bench --output` -->";
const RESULTS_END: &str = "<!-- end of bench results -->";

/// Replaces the results section of an existing document (keeping the method
/// around it), or makes a document of the results alone.
fn splice_results(document: &str, results: &str) -> String {
    let section = format!("{RESULTS_BEGIN}\n{results}{RESULTS_END}");
    match (document.find(RESULTS_BEGIN), document.find(RESULTS_END)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{section}{}",
            &document[..begin],
            &document[end + RESULTS_END.len()..]
        ),
        _ => format!("{section}\n"),
    }
}

pub fn table(figures: &[Figure]) -> String {
    String::from("| figure | measured | target | verdict | numerator | denominator | runs |\n|---|---|---|---|---|---|---|\n")
        + &rows(figures, "")
}

/// The table's rows, each figure's name followed by `label` (the engine
/// of a lane's figures).
fn rows(figures: &[Figure], label: &str) -> String {
    let mut text = String::new();
    for figure in figures {
        text.push_str(&format!(
            "| {}{label} | {} | {} | {} | {} | {} | {} |\n",
            figure.name,
            figure.value_text(),
            figure.target.text(),
            figure.verdict(),
            figure.numerator,
            figure.denominator,
            figure.runs
        ));
    }
    text
}

/// This machine, for the record.
/// How many images podman's storage holds (intermediate ones too).
fn storage_size(runner: &Runner) -> String {
    runner
        .read(&Command::new(podman::PROGRAM).args(["images", "--all", "--quiet"]))
        .map(|ids| format!("{} images in podman's storage", ids.lines().count()))
        .unwrap_or_else(|_| "podman's storage size unknown".into())
}

pub fn machine(runner: &Runner) -> String {
    let mut system = sysinfo::System::new();
    system.refresh_cpu_all();
    system.refresh_memory();
    let cpu = system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_owned())
        .unwrap_or_default();
    let podman = runner
        .read(&podman::version())
        .map(|version| version.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{} {} ({}), {} logical CPUs ({cpu}), {:.0} GiB memory, podman {podman}",
        sysinfo::System::name().unwrap_or_default(),
        sysinfo::System::os_version().unwrap_or_default(),
        sysinfo::System::kernel_version().unwrap_or_default(),
        system.cpus().len(),
        system.total_memory() as f64 / (1u64 << 30) as f64,
    )
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
    fn the_relay_passes_every_byte_both_ways_a_round_trip_later() {
        use std::io::{Read, Write};
        let server = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let target = server.local_addr().unwrap().port();
        // Echoes what it reads until the client stops writing.
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            stream.write_all(&received).unwrap();
        });
        let delay = Duration::from_millis(30);
        let relay = DelayedRelay::start(target, delay).unwrap();
        // More than one chunk of the relay's buffer.
        let sent: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let start = Instant::now();
        let mut client = std::net::TcpStream::connect(relay.host()).unwrap();
        client.write_all(&sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        assert!(echoed == sent, "every byte, in order");
        assert!(
            start.elapsed() >= 2 * delay,
            "held {delay:?} each way: {:?}",
            start.elapsed()
        );
        echo.join().unwrap();
        drop(relay);
    }

    #[test]
    fn results_replace_only_their_section() {
        let document = format!("# Method\n\ntext\n\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\n\nmore\n");
        let spliced = splice_results(&document, "new\n");
        assert_eq!(
            spliced,
            format!("# Method\n\ntext\n\n{RESULTS_BEGIN}\nnew\n{RESULTS_END}\n\nmore\n")
        );
        assert!(splice_results("", "x\n").starts_with(RESULTS_BEGIN));
    }

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
    fn an_option_and_its_value_come_out_of_a_command_line() {
        assert_eq!(
            without_option("podman build --iidfile /t/x.id --file F .", "--iidfile"),
            "podman build --file F ."
        );
        assert_eq!(
            without_option("podman build .", "--iidfile"),
            "podman build ."
        );
    }

    #[test]
    fn medians_and_verdicts() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), ms(3));
        assert!(Target::AtMost(0.15).met(0.15) && !Target::AtMost(0.15).met(0.2));
        assert!(Target::AtLeast(10.0).met(12.0) && !Target::AtLeast(10.0).met(9.9));
    }
}
