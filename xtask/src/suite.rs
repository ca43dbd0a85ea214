//! The test suite as the lanes run it: the workspace's test executables,
//! compiled once; each end-to-end test run alone and timed; and the table of
//! where a run's time went (`cargo xtask test` ends with it).
//!
//! Running the executables rather than `cargo test` is what makes each test's
//! seconds visible (libtest prints none on stable Rust), and lets every lane
//! run the same binaries the same way.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::exec::{Command, Runner};

/// What a test executable holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A crate's own `#[cfg(test)]` tests (lib or bin target): fast, run whole.
    Unit,
    /// A `tests/*.rs` target: each test runs alone, so each one is timed.
    Integration,
}

/// One test executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBinary {
    pub target: String,
    pub kind: Kind,
    pub executable: PathBuf,
    /// Its package's directory: cargo runs a test there, and so do we.
    pub package_dir: PathBuf,
}

/// Compiles, with `cargo`, every test of the workspace whose manifest is
/// `manifest` (and the xtask binary the end-to-end tests run); returns the
/// executables by target name.
pub fn compile(runner: &Runner, cargo: &str, manifest: &Path) -> Result<Vec<TestBinary>> {
    eprintln!("test: compiling the test binaries");
    let json = runner
        .read(
            &Command::new(cargo)
                .args(["test", "--workspace", "--locked", "--no-run"])
                .args(["--message-format", "json", "--manifest-path"])
                .arg(manifest.to_string_lossy()),
        )
        .context("cannot compile the tests")?;
    Ok(binaries_from_messages(&json))
}

/// The test executables in cargo's JSON messages, by target name (pure).
/// `zz_*` targets sort last, as cargo runs them.
pub fn binaries_from_messages(messages: &str) -> Vec<TestBinary> {
    let mut binaries: Vec<TestBinary> = messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["profile"]["test"] == true
        })
        .filter_map(|message| {
            let target = message["target"]["name"].as_str()?.to_owned();
            let executable = PathBuf::from(message["executable"].as_str()?);
            let kinds = message["target"]["kind"].as_array()?;
            let kind = if kinds.iter().any(|kind| kind == "test") {
                Kind::Integration
            } else {
                Kind::Unit
            };
            let package_dir = Path::new(message["manifest_path"].as_str()?)
                .parent()?
                .to_path_buf();
            Some(TestBinary {
                target,
                kind,
                executable,
                package_dir,
            })
        })
        .collect();
    binaries.sort_by(|a, b| a.target.cmp(&b.target));
    binaries.dedup_by(|a, b| a.executable == b.executable);
    binaries
}

/// The xtask binary cargo built beside the test executables.
pub fn xtask_binary(binaries: &[TestBinary]) -> Result<PathBuf> {
    let some_test = binaries.first().context("cargo built no test binary")?;
    // target/debug/deps/NAME-HASH -> target/debug/xtask
    let profile = some_test
        .executable
        .parent()
        .and_then(Path::parent)
        .context("a test binary outside target/PROFILE/deps")?;
    Ok(profile.join(env!("CARGO_BIN_NAME")))
}

/// One run of a test executable: a single test, or a unit-test binary whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// `target::name`, or the target for a whole binary.
    pub label: String,
    pub executable: PathBuf,
    pub args: Vec<String>,
    pub package_dir: PathBuf,
}

impl TestRun {
    fn single(binary: &TestBinary, name: &str) -> TestRun {
        TestRun {
            label: format!("{}::{name}", binary.target),
            executable: binary.executable.clone(),
            args: vec![name.to_owned(), "--exact".to_owned()],
            package_dir: binary.package_dir.clone(),
        }
    }

    fn whole(binary: &TestBinary) -> TestRun {
        TestRun {
            label: format!("{} (unit tests)", binary.target),
            executable: binary.executable.clone(),
            args: Vec::new(),
            package_dir: binary.package_dir.clone(),
        }
    }
}

/// Every test of `binaries` as the host lane runs them: unit-test binaries
/// whole, integration tests one by one (listed by the binary itself).
pub fn every_test(runner: &Runner, binaries: &[TestBinary]) -> Result<Vec<TestRun>> {
    let mut runs = Vec::new();
    for binary in binaries {
        match binary.kind {
            Kind::Unit => runs.push(TestRun::whole(binary)),
            Kind::Integration => {
                let listing = runner
                    .read(
                        &Command::new(binary.executable.to_string_lossy())
                            .args(["--list", "--format", "terse"])
                            .current_dir(&binary.package_dir),
                    )
                    .with_context(|| format!("cannot list the tests of {}", binary.target))?;
                runs.extend(
                    listed_tests(&listing)
                        .iter()
                        .map(|name| TestRun::single(binary, name)),
                );
            }
        }
    }
    Ok(runs)
}

/// The named tests (`(target, name)`), each to run alone.
pub fn named_tests(
    binaries: &[TestBinary],
    tests: &[(&'static str, &'static str)],
) -> Result<Vec<TestRun>> {
    tests
        .iter()
        .map(|(target, name)| {
            let binary = binaries
                .iter()
                .find(|binary| binary.target == *target)
                .with_context(|| format!("cargo built no test target {target}"))?;
            Ok(TestRun::single(binary, name))
        })
        .collect()
}

/// Test names in libtest's `--list --format terse` output (pure).
pub fn listed_tests(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// The runs whose label contains one of `filters` (all when there are none).
pub fn filtered(runs: Vec<TestRun>, filters: &[String]) -> Vec<TestRun> {
    if filters.is_empty() {
        return runs;
    }
    runs.into_iter()
        .filter(|run| {
            filters
                .iter()
                .any(|filter| run.label.contains(filter.as_str()))
        })
        .collect()
}

/// Runs each of `runs` with `wrap` (the lane's way to run a command),
/// timing each into `timings`; every run goes, and those that failed are
/// named together.
pub fn run_each(
    runner: &Runner,
    lane: &str,
    runs: &[TestRun],
    wrap: &dyn Fn(&TestRun) -> Command,
    timings: &mut Timings,
) -> Result<()> {
    let prefix = format!("[{lane}] ");
    let mut failed = Vec::new();
    for run in runs {
        crate::interrupt::check()?;
        let started = Instant::now();
        let result = runner.run_prefixed(&wrap(run), &prefix);
        timings.test(lane, &run.label, started.elapsed(), result.is_ok());
        if let Err(error) = result {
            eprintln!("{prefix}FAILED: {}: {error:#}", run.label);
            failed.push(run.label.clone());
        }
    }
    if !failed.is_empty() {
        bail!("the {lane} lane failed: {}", failed.join(", "));
    }
    eprintln!("test: the {lane} lane passed ({} test runs)", runs.len());
    Ok(())
}

/// How long each phase and each test of a `cargo xtask test` run took.
#[derive(Debug, Default)]
pub struct Timings {
    phases: Vec<Phase>,
    tests: Vec<TestTiming>,
}

#[derive(Debug, Clone)]
struct Phase {
    name: String,
    elapsed: Duration,
    note: String,
    /// Part of the phase after it (a lane's preparation): shown, not added
    /// to the total again.
    detail: bool,
}

#[derive(Debug, Clone)]
struct TestTiming {
    lane: String,
    label: String,
    elapsed: Duration,
    passed: bool,
}

impl Timings {
    /// A phase (setup, base images, compile, a lane) and a note on it.
    pub fn phase(&mut self, name: &str, elapsed: Duration, note: impl Into<String>) {
        self.push(name, elapsed, note.into(), false);
    }

    /// A part of the next phase (recorded while that phase runs).
    pub fn detail(&mut self, name: &str, elapsed: Duration, note: impl Into<String>) {
        self.push(name, elapsed, note.into(), true);
    }

    fn push(&mut self, name: &str, elapsed: Duration, note: String, detail: bool) {
        self.phases.push(Phase {
            name: name.to_owned(),
            elapsed,
            note,
            detail,
        });
    }

    /// Another's phases and tests after these (what a thread timed).
    pub fn absorb(&mut self, other: Timings) {
        self.phases.extend(other.phases);
        self.tests.extend(other.tests);
    }

    pub fn test(&mut self, lane: &str, label: &str, elapsed: Duration, passed: bool) {
        self.tests.push(TestTiming {
            lane: lane.to_owned(),
            label: label.to_owned(),
            elapsed,
            passed,
        });
    }

    /// `(passed, failed)` runs in `lane`, or in every lane.
    pub fn counts(&self, lane: Option<&str>) -> (usize, usize) {
        let of_lane = || {
            self.tests
                .iter()
                .filter(move |test| lane.is_none_or(|lane| test.lane == lane))
        };
        let passed = of_lane().filter(|test| test.passed).count();
        (passed, of_lane().count() - passed)
    }

    /// The table: each phase, the total, the `slowest` slowest tests, and
    /// the closing count line (`N passed, M failed`).
    pub fn render(&self, slowest: usize) -> String {
        let mut text = String::from("| phase | seconds | note |\n|---|---:|---|\n");
        let mut total = Duration::ZERO;
        for phase in &self.phases {
            let name = if phase.detail {
                format!("· {}", phase.name)
            } else {
                total += phase.elapsed;
                phase.name.clone()
            };
            text.push_str(&format!(
                "| {name} | {:.0} | {} |\n",
                phase.elapsed.as_secs_f64(),
                phase.note
            ));
        }
        text.push_str(&format!("| total | {:.0} | |\n", total.as_secs_f64()));
        let mut tests: Vec<&TestTiming> = self.tests.iter().collect();
        tests.sort_by_key(|test| std::cmp::Reverse(test.elapsed));
        text.push_str(&format!(
            "\nthe {} slowest tests:\n| lane | test | seconds |\n|---|---|---:|\n",
            slowest.min(tests.len())
        ));
        for test in tests.into_iter().take(slowest) {
            text.push_str(&format!(
                "| {} | {}{} | {:.0} |\n",
                test.lane,
                test.label,
                if test.passed { "" } else { " (FAILED)" },
                test.elapsed.as_secs_f64()
            ));
        }
        let (passed, failed) = self.counts(None);
        text.push_str(&format!("\ntests: {passed} passed, {failed} failed\n"));
        text
    }
}

/// `phase`'s wall time, recorded under `name` whatever `phase` returns.
pub fn timed<T>(timings: &mut Timings, name: &str, phase: impl FnOnce() -> Result<T>) -> Result<T> {
    time_into(timings, name, false, phase)
}

/// [`timed`], as a part of the phase that runs it (a lane's preparation).
pub fn timed_detail<T>(
    timings: &mut Timings,
    name: &str,
    phase: impl FnOnce() -> Result<T>,
) -> Result<T> {
    time_into(timings, name, true, phase)
}

fn time_into<T>(
    timings: &mut Timings,
    name: &str,
    detail: bool,
    phase: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let result = phase();
    let note = if result.is_ok() { "" } else { "failed" };
    timings.push(name, started.elapsed(), note.to_owned(), detail);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGES: &str = r#"{"reason":"compiler-artifact","target":{"name":"podman-release","kind":["bin"]},"profile":{"test":false},"executable":"/t/debug/podman-release","manifest_path":"/w/xtask/Cargo.toml"}
{"reason":"compiler-artifact","target":{"name":"zz_cleanup_e2e","kind":["test"]},"profile":{"test":true},"executable":"/t/debug/deps/zz_cleanup_e2e-9f","manifest_path":"/w/xtask/Cargo.toml"}
{"reason":"compiler-artifact","target":{"name":"pipeline_e2e","kind":["test"]},"profile":{"test":true},"executable":"/t/debug/deps/pipeline_e2e-0a1b","manifest_path":"/w/xtask/Cargo.toml"}
{"reason":"compiler-artifact","target":{"name":"podman-release","kind":["bin"]},"profile":{"test":true},"executable":"/t/debug/deps/podman_release-77","manifest_path":"/w/xtask/Cargo.toml"}
{"reason":"compiler-artifact","target":{"name":"serde","kind":["lib"]},"profile":{"test":false},"executable":null,"manifest_path":"/r/serde/Cargo.toml"}
{"reason":"build-finished","success":true}"#;

    #[test]
    fn test_binaries_are_found_in_cargos_messages_with_their_kind_and_package() {
        let binaries = binaries_from_messages(MESSAGES);
        let targets: Vec<(&str, Kind)> = binaries
            .iter()
            .map(|binary| (binary.target.as_str(), binary.kind))
            .collect();
        assert_eq!(
            targets,
            [
                ("pipeline_e2e", Kind::Integration),
                ("podman-release", Kind::Unit),
                ("zz_cleanup_e2e", Kind::Integration)
            ],
            "sorted by target, the cleanup last"
        );
        assert_eq!(binaries[0].package_dir, PathBuf::from("/w/xtask"));
        assert_eq!(
            xtask_binary(&binaries).unwrap(),
            PathBuf::from("/t/debug/podman-release")
        );
        let runs = named_tests(&binaries, &[("pipeline_e2e", "a_test")]).unwrap();
        assert_eq!(runs[0].label, "pipeline_e2e::a_test");
        assert_eq!(runs[0].args, ["a_test", "--exact"]);
        let missing = named_tests(&binaries, &[("release_e2e", "x")]).unwrap_err();
        assert!(missing.to_string().contains("release_e2e"), "{missing}");
    }

    #[test]
    fn listed_tests_are_the_lines_of_kind_test() {
        let listing =
            "a_test: test\nother::nested: test\nsome_bench: benchmark\n\n3 tests, 0 benchmarks\n";
        assert_eq!(listed_tests(listing), ["a_test", "other::nested"]);
    }

    #[test]
    fn a_filter_keeps_the_runs_that_name_it() {
        let binaries = binaries_from_messages(MESSAGES);
        let runs = named_tests(
            &binaries,
            &[("pipeline_e2e", "push_one"), ("zz_cleanup_e2e", "clean")],
        )
        .unwrap();
        assert_eq!(filtered(runs.clone(), &[]).len(), 2);
        let kept = filtered(runs, &["clean".to_owned()]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].label, "zz_cleanup_e2e::clean");
    }

    #[test]
    fn the_table_gives_each_phase_the_total_and_the_slowest_tests_first() {
        let mut timings = Timings::default();
        timings.phase("setup", Duration::from_secs(12), "");
        timings.detail("podman 5: environment", Duration::from_secs(40), "");
        timings.phase("lane host", Duration::from_secs(600), "3 passed, 1 failed");
        timings.test("host", "a::fast", Duration::from_secs(1), true);
        timings.test("host", "a::slow", Duration::from_secs(90), true);
        timings.test("host", "b::broken", Duration::from_secs(30), false);
        timings.test("rootless", "a::slow", Duration::from_secs(70), true);
        let table = timings.render(3);
        assert!(table.contains("| setup | 12 |"), "{table}");
        assert!(
            table.contains("| · podman 5: environment | 40 |"),
            "{table}"
        );
        assert!(table.contains("| total | 612 | |"), "{table}");
        let slow = table.find("| host | a::slow | 90 |").unwrap();
        let rootless = table.find("| rootless | a::slow | 70 |").unwrap();
        let broken = table.find("| host | b::broken (FAILED) | 30 |").unwrap();
        assert!(slow < rootless && rootless < broken, "{table}");
        assert!(!table.contains("a::fast"), "only the 3 slowest: {table}");
        assert!(table.ends_with("tests: 3 passed, 1 failed\n"), "{table}");
        assert_eq!(timings.counts(Some("rootless")), (1, 0));
    }
}
