//! The test suite's lanes: the end-to-end tests that matter, run against
//! another podman than the host's, as its users run it.
//!
//! - `host`: this machine's podman (Debian 12's 4.3) as root: the whole suite.
//! - `podman5`: Debian 13's podman 5.4 in a privileged container of the
//!   host's podman ([`NestedPodman`]), made from the Debian archive like the
//!   base images (`containers/lanes/podman5.json`), its storage in a host
//!   directory. Inside, the xtask runs `setup` as on a new Debian 13 machine.
//! - `rootless`: this machine's podman as an unprivileged user with
//!   subordinate IDs, in its own storage.
//!
//! The test binaries are compiled once on the host and run in each lane as
//! they are (Debian 13's libc is newer, so they load there too). Base
//! images travel as a `podman save` archive (`base-images --export`), so no
//! lane builds them again.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use crate::flags::Lane;

use crate::{
    base_images,
    engine::Engine,
    exec::{Command, Runner},
    project,
    suite::{self, TestBinary, TestRun, Timings},
};

impl Lane {
    /// Its name in output, timings and summaries.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Host => "host",
            Lane::Podman5 => "podman 5",
            Lane::Rootless => "rootless",
        }
    }
}

pub const ALL: [Lane; 3] = [Lane::Host, Lane::Podman5, Lane::Rootless];

/// One test of an integration-test target: `(target, test name)`.
pub type LaneTest = (&'static str, &'static str);

/// What the podman 5 lane runs: both platforms built and run, the fallback,
/// build-and-push read back (OCI and, alone, `--format v2s2`), push-by-digest
/// and merge, reproducible digests, a rerun that adds nothing, SIGINT
/// mid-build, check-disk-space and clean-build-cache.
pub const PODMAN5_TESTS: &[LaneTest] = &[
    (
        "build_image_e2e",
        "rc_web_builds_for_both_platforms_and_each_image_runs_as_its_architecture",
    ),
    // After the build above: its layers are what the first release of
    // this test pushes to the cache (else it compiles them again).
    (
        "registry_cache_e2e",
        "a_fresh_storage_takes_the_base_images_and_the_dependency_compile_from_the_registry",
    ),
    (
        "pipeline_e2e",
        "when_arm64_fails_the_fallback_keeps_amd64_and_leaves_latest_alone",
    ),
    (
        "pipeline_e2e",
        "build_and_push_puts_every_tag_in_the_registry_with_both_platforms",
    ),
    (
        "pipeline_e2e",
        "a_single_platform_build_is_built_and_pushed",
    ),
    (
        "release_e2e",
        "per_architecture_jobs_and_merge_release_what_build_and_push_releases",
    ),
    (
        "release_e2e",
        "two_clean_builds_of_one_commit_have_identical_digests",
    ),
    (
        "reliability_e2e",
        "a_signal_stops_podman_removes_what_the_run_made_and_moves_no_tag",
    ),
    (
        "declared_release_e2e",
        "an_ordinary_crate_is_released_to_two_registries_with_only_its_metadata",
    ),
    (
        "declared_release_e2e",
        "a_dry_run_prints_exactly_what_the_real_run_then_runs",
    ),
    (
        "reproduce_e2e",
        "a_release_is_rebuilt_from_its_commit_bit_for_bit_and_a_replaced_file_is_named",
    ),
    // Debian 13's skopeo checks sigstore signatures (Debian 12's cannot).
    (
        "signing_e2e",
        "a_signed_release_verifies_everywhere_and_tampering_is_refused",
    ),
    (
        "disk_space_e2e",
        "the_reported_usage_is_the_bytes_on_disk_and_a_clean_frees_what_it_said",
    ),
    (
        "zz_cleanup_e2e",
        "clean_build_cache_removes_leftovers_and_keeps_what_lists_refer_to",
    ),
];

/// What the rootless lane runs: the main job (rc-web's one full build
/// here), the fallback, and the push paths (small images).
pub const ROOTLESS_TESTS: &[LaneTest] = &[
    (
        "build_image_e2e",
        "rc_web_builds_for_both_platforms_and_each_image_runs_as_its_architecture",
    ),
    (
        "pipeline_e2e",
        "when_arm64_fails_the_fallback_keeps_amd64_and_leaves_latest_alone",
    ),
    (
        "pipeline_e2e",
        "build_and_push_puts_every_tag_in_the_registry_with_both_platforms",
    ),
    (
        "pipeline_e2e",
        "a_single_platform_build_is_built_and_pushed",
    ),
    (
        "release_e2e",
        "per_architecture_jobs_and_merge_release_what_build_and_push_releases",
    ),
    (
        "declared_release_e2e",
        "an_ordinary_crate_is_released_to_two_registries_with_only_its_metadata",
    ),
    (
        "disk_space_e2e",
        "the_reported_usage_is_the_bytes_on_disk_and_a_clean_frees_what_it_said",
    ),
];

/// The recipe of the podman 5 lane's environment.
pub const PODMAN5_RECIPE: &str = "containers/lanes/podman5.json";
/// Where the podman 5 lane keeps its storage between runs (a host
/// directory: overlay on the container's own overlay fails).
pub const PODMAN5_STORAGE: &str = "/var/tmp/rc-lanes/podman5-storage";
/// The user of the rootless lane.
pub const ROOTLESS_USER: &str = "rc-rootless";

/// A lane's steps, each run with `wrap` (the lane's way to run a command):
/// `xtask setup` as its user would run it first (it must find nothing left
/// for root to do), the base images from `archive`, then every test, each
/// timed into `timings`; the failed tests are reported together.
fn run_lane(
    runner: &Runner,
    lane: &str,
    (xtask, archive): (&Path, &Path),
    tests: &[TestRun],
    timings: &mut Timings,
    wrap: impl Fn(&str, &[String]) -> Command,
) -> Result<()> {
    let prefix = format!("[{lane}] ");
    suite::timed_detail(timings, &format!("{lane}: setup and base images"), || {
        prepare_engine(runner, &prefix, (xtask, archive), &wrap)
    })?;
    suite::run_each(
        runner,
        lane,
        tests,
        &|run| wrap(&run.executable.to_string_lossy(), &run.args),
        timings,
    )
}

/// What the podman 5 and rootless lanes start from, made ahead (while the
/// tests compile): the base images' archive, the podman 5 environment.
/// Each is made only where missing or out of date, as the lanes would.
pub fn prepare_images(runner: &Runner, lanes: &[Lane]) -> Result<()> {
    let engine = Engine::read(runner)?;
    if lanes.iter().any(|lane| *lane != Lane::Host) {
        base_images_archive(runner, engine)?;
    }
    if lanes.contains(&Lane::Podman5) {
        base_images::ensure_recipe(
            runner,
            &project::root().join(PODMAN5_RECIPE),
            engine.build_platform,
        )?;
    }
    Ok(())
}

/// The base images as an archive for the other lanes, written when there is
/// none for their current definitions (older ones are removed).
pub fn base_images_archive(runner: &Runner, engine: &Engine) -> Result<PathBuf> {
    let (_, fingerprint) = base_images::images_and_fingerprint(engine.build_platform)?;
    let directory = project::scratch_dir().join("lanes");
    let archive = directory.join(format!("base-images-{fingerprint}.tar"));
    if archive.is_file() {
        return Ok(archive);
    }
    if let Ok(entries) = std::fs::read_dir(&directory) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("base-images-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let partial = directory.join(format!("base-images-{fingerprint}.partial.tar"));
    let _ = std::fs::remove_file(&partial);
    base_images::export(runner, engine.build_platform, &partial)?;
    // The rootless lane's user reads it too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot make {} readable", partial.display()))?;
    std::fs::rename(&partial, &archive).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            archive.display()
        )
    })?;
    Ok(archive)
}

/// The Rust toolchain's directory (the xtask runs `cargo metadata`).
fn rust_sysroot(runner: &Runner) -> Result<PathBuf> {
    let text = runner
        .read(&Command::new("rustc").args(["--print", "sysroot"]))
        .context("cannot find the Rust toolchain (rustc --print sysroot)")?;
    Ok(PathBuf::from(text.trim()))
}

/// Lane containers are named this, then the pid of the xtask that started them.
const CONTAINER_PREFIX: &str = "rc-lane-";

/// Lane containers whose xtask is gone (killed before it could remove
/// them): they would hold the lane's storage for nothing.
fn remove_orphans(runner: &Runner) {
    let listing = Command::new(crate::engine::podman::PROGRAM).args([
        "ps",
        "--all",
        "--filter",
        &format!("name={CONTAINER_PREFIX}"),
        "--format",
        "{{.Names}}",
    ]);
    let Ok(names) = runner.read(&listing) else {
        return;
    };
    for name in names
        .lines()
        .filter(|name| orphaned(name, crate::engine::local_list::process_exists))
    {
        eprintln!("test: removing the lane container {name} of an xtask that is gone");
        let _ = runner.run_quietly(
            &Command::new(crate::engine::podman::PROGRAM)
                .args(["rm", "--force", "--time", "0", name]),
        );
    }
}

/// `rc-lane-PID` whose process no longer runs (pure but for `alive`).
fn orphaned(name: &str, alive: impl Fn(u32) -> bool) -> bool {
    name.strip_prefix(CONTAINER_PREFIX)
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !alive(pid))
}

/// A container of the host's podman with another podman inside, kept running
/// while the lane's commands run in it (`podman exec`), removed on drop.
pub struct NestedPodman<'a> {
    runner: &'a Runner,
    name: String,
    environment: Vec<(String, String)>,
    workdir: PathBuf,
}

impl<'a> NestedPodman<'a> {
    /// Starts `image` privileged on the host network (servers the tests
    /// start stay on 127.0.0.1), with `/var/lib/containers` on `storage`
    /// and each of `mounts` at the same path.
    pub fn start(
        runner: &'a Runner,
        image: &str,
        storage: &Path,
        mounts: &[(PathBuf, bool)],
        environment: Vec<(String, String)>,
        workdir: PathBuf,
    ) -> Result<NestedPodman<'a>> {
        std::fs::create_dir_all(storage)
            .with_context(|| format!("cannot create {}", storage.display()))?;
        remove_orphans(runner);
        let name = format!("{CONTAINER_PREFIX}{}", std::process::id());
        let mut command = Command::new(crate::engine::podman::PROGRAM).args([
            "run",
            "--detach",
            "--rm",
            "--name",
            &name,
            "--privileged",
            "--network",
            "host",
            "--volume",
        ]);
        command = command.arg(format!("{}:/var/lib/containers", storage.display()));
        for (path, writable) in mounts {
            let mode = if *writable { "rw" } else { "ro" };
            command = command
                .arg("--volume")
                .arg(format!("{0}:{0}:{mode}", path.display()));
        }
        runner
            .run(&command.arg(image))
            .context("cannot start the lane's podman container")?;
        Ok(NestedPodman {
            runner,
            name,
            environment,
            workdir,
        })
    }

    /// `program args` inside, with the lane's environment.
    pub fn exec(&self, program: &str, args: &[String]) -> Command {
        let mut command = Command::new(crate::engine::podman::PROGRAM).args(["exec", "--workdir"]);
        command = command.arg(self.workdir.to_string_lossy());
        for (name, value) in &self.environment {
            command = command.arg("--env").arg(format!("{name}={value}"));
        }
        command
            .arg(&self.name)
            .arg(program)
            .args(args.iter().cloned())
    }
}

impl Drop for NestedPodman<'_> {
    fn drop(&mut self) {
        let remove = Command::new(crate::engine::podman::PROGRAM)
            .args(["rm", "--force", "--time", "0", &self.name]);
        if !self.runner.run_quietly(&remove).unwrap_or(false) {
            eprintln!(
                "test: warning: cannot remove the lane container {}",
                self.name
            );
        }
    }
}

/// The tests of a lane's list that `filters` keep.
fn chosen(binaries: &[TestBinary], tests: &[LaneTest], filters: &[String]) -> Result<Vec<TestRun>> {
    Ok(suite::filtered(
        suite::named_tests(binaries, tests)?,
        filters,
    ))
}

/// The podman 5 lane.
pub fn podman5(
    runner: &Runner,
    binaries: &[TestBinary],
    filters: &[String],
    timings: &mut Timings,
) -> Result<()> {
    let tests = chosen(binaries, PODMAN5_TESTS, filters)?;
    if tests.is_empty() {
        return Ok(());
    }
    let xtask = suite::xtask_binary(binaries)?;
    let directories: Vec<PathBuf> = binaries
        .iter()
        .map(|binary| &binary.executable)
        .chain([&xtask])
        .filter_map(|executable| executable.parent().map(Path::to_path_buf))
        .collect();
    let (nested, archive) =
        suite::timed_detail(timings, "podman 5: its environment (nested podman)", || {
            start_podman5(runner, &directories)
        })?;
    run_lane(
        runner,
        Lane::Podman5.label(),
        (&xtask, &archive),
        &tests,
        timings,
        |program, args| nested.exec(program, args),
    )
}

/// The host lane: every test of the workspace on this machine's podman, as
/// this user; unit-test binaries whole, the others one test at a time.
pub fn host(
    runner: &Runner,
    binaries: &[TestBinary],
    filters: &[String],
    timings: &mut Timings,
) -> Result<()> {
    let tests = suite::filtered(suite::every_test(runner, binaries)?, filters);
    let cargo = project::cargo();
    suite::run_each(
        runner,
        Lane::Host.label(),
        &tests,
        &|run| {
            Command::new(run.executable.to_string_lossy())
                .args(run.args.iter().cloned())
                .env("CARGO", cargo.as_str())
                .env("CARGO_MANIFEST_DIR", run.package_dir.to_string_lossy())
                .current_dir(&run.package_dir)
        },
        timings,
    )
}

/// Debian 13's podman 5.4 in a privileged container of this podman, with
/// the checkout, the Rust toolchain, the CA bundle and `directories` (the
/// programs to run there) mounted at their own paths; and the archive of
/// the base images for it to import. Used by the lane and by `bench --lane
/// podman5`.
pub fn start_podman5<'a>(
    runner: &'a Runner,
    directories: &[PathBuf],
) -> Result<(NestedPodman<'a>, PathBuf)> {
    let engine = Engine::read(runner)?;
    let root = project::root();
    let recipe =
        base_images::ensure_recipe(runner, &root.join(PODMAN5_RECIPE), engine.build_platform)?;
    let archive = base_images_archive(runner, engine)?;
    let sysroot = rust_sysroot(runner)?;
    let mut mounts = vec![(root.clone(), true), (sysroot.clone(), false)];
    let ca_bundle = PathBuf::from(crate::engine::HOST_CA_BUNDLE);
    if ca_bundle.is_file() {
        // The host's trust (a TLS-inspecting proxy's CA, for cargo in builds).
        mounts.push((ca_bundle, false));
    }
    for directory in directories {
        if !directory.starts_with(&root)
            && !mounts.iter().any(|(path, _)| directory.starts_with(path))
        {
            mounts.push((directory.clone(), false));
        }
    }
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        sysroot.join("bin").display()
    );
    let environment = vec![
        ("PATH".to_owned(), path),
        ("HOME".to_owned(), "/root".to_owned()),
        ("CARGO_HOME".to_owned(), "/tmp/cargo-home".to_owned()),
        ("PODMAN_IGNORE_CGROUPSV1_WARNING".to_owned(), "1".to_owned()),
    ];
    let nested = NestedPodman::start(
        runner,
        &recipe.image_for(engine.build_platform.arch),
        Path::new(PODMAN5_STORAGE),
        &mounts,
        environment,
        root,
    )?;
    Ok((nested, archive))
}

/// `xtask setup` and `base-images --import` in a lane's engine, as on a new
/// machine of its kind (`wrap` runs a command there).
pub fn prepare_engine(
    runner: &Runner,
    prefix: &str,
    (xtask, archive): (&Path, &Path),
    wrap: impl Fn(&str, &[String]) -> Command,
) -> Result<()> {
    let xtask = xtask.to_string_lossy();
    runner.run_prefixed(
        &wrap(&xtask, &["setup".into(), "--no-cargo-make".into()]),
        prefix,
    )?;
    runner.run_prefixed(
        &wrap(
            &xtask,
            &[
                "base-images".into(),
                "--import".into(),
                archive.to_string_lossy().into_owned(),
            ],
        ),
        prefix,
    )
}

/// The rootless lane: the tests as [`ROOTLESS_USER`], made here when
/// missing (`useradd` gives it subordinate IDs), in its own storage.
pub fn rootless(
    runner: &Runner,
    binaries: &[TestBinary],
    filters: &[String],
    timings: &mut Timings,
) -> Result<()> {
    let tests = chosen(binaries, ROOTLESS_TESTS, filters)?;
    if tests.is_empty() {
        return Ok(());
    }
    if project::current_uid() != 0 {
        bail!("the rootless lane runs its tests as the user {ROOTLESS_USER}: run it as root");
    }
    let engine = Engine::read(runner)?;
    let archive = base_images_archive(runner, engine)?;
    let home = ensure_user(runner)?;
    let toolchain = toolchain_for(runner, &rust_sysroot(runner)?, &home)?;
    let xtask = suite::xtask_binary(binaries)?;
    let root = project::root();
    let as_user = |program: &str, args: &[String]| -> Command {
        Command::new("runuser")
            .args(["-u", ROOTLESS_USER, "--", "env", "-i"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("USER={ROOTLESS_USER}"))
            .arg(format!("LOGNAME={ROOTLESS_USER}"))
            .arg(format!(
                "PATH={}:/usr/local/bin:/usr/bin:/bin",
                toolchain.join("bin").display()
            ))
            .arg("LANG=C.UTF-8")
            .arg(program)
            .args(args.iter().cloned())
            .current_dir(&home)
    };
    // The tests build and clone this checkout, which root owns: git (and
    // libgit2) refuse another user's repository unless it is named safe.
    // (`git clone` checks the `.git` directory itself.)
    for (how, directory) in [
        ("--replace-all", root.clone()),
        ("--add", root.join(".git")),
    ] {
        runner.run(&as_user(
            "git",
            &[
                "config".into(),
                "--global".into(),
                how.into(),
                "safe.directory".into(),
                directory.to_string_lossy().into_owned(),
            ],
        ))?;
    }
    reset_storage_on_vfs(runner, &as_user)?;
    run_lane(
        runner,
        Lane::Rootless.label(),
        (&xtask, &archive),
        &tests,
        timings,
        as_user,
    )
}

/// The lane's user, made when missing; returns its home directory.
fn ensure_user(runner: &Runner) -> Result<PathBuf> {
    let entry =
        |runner: &Runner| runner.read(&Command::new("getent").args(["passwd", ROOTLESS_USER]));
    if entry(runner).is_err() {
        eprintln!("test: making the user {ROOTLESS_USER} for the rootless lane");
        runner.run(&Command::new("useradd").args([
            "--create-home",
            "--shell",
            "/bin/bash",
            ROOTLESS_USER,
        ]))?;
    }
    let home = entry(runner)?
        .trim()
        .split(':')
        .nth(5)
        .map(PathBuf::from)
        .context("getent passwd printed no home directory")?;
    let subordinate = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subordinate
        .lines()
        .any(|line| line.starts_with(&format!("{ROOTLESS_USER}:")))
    {
        bail!(
            "{ROOTLESS_USER} has no subordinate IDs in /etc/subuid; run once: usermod \
             --add-subuids 200000-265535 --add-subgids 200000-265535 {ROOTLESS_USER}"
        );
    }
    Ok(home)
}

/// The Rust toolchain where the user can run it (the xtask runs `cargo
/// metadata`): root's is under /root, which other users cannot enter. Hard
/// links (no copy of the data) where the two share a filesystem.
fn toolchain_for(runner: &Runner, sysroot: &Path, home: &Path) -> Result<PathBuf> {
    let name = sysroot.file_name().context("the toolchain has no name")?;
    let target = home.join(".cache/rc-lane-toolchains").join(name);
    if target.join("bin/cargo").is_file() {
        return Ok(target);
    }
    let parent = target.parent().expect("joined above");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let copy = |flags: &str| {
        Command::new("cp")
            .arg(flags)
            .arg(sysroot.to_string_lossy())
            .arg(target.to_string_lossy())
    };
    if !runner.run_quietly(&copy("-al"))? {
        let _ = std::fs::remove_dir_all(&target);
        runner.run(&copy("-a"))?;
    }
    Ok(target)
}

/// The lane's user is the lane's own: storage that podman started on vfs
/// (before containers-storage configured overlay) is reset, not refused.
fn reset_storage_on_vfs(
    runner: &Runner,
    as_user: &impl Fn(&str, &[String]) -> Command,
) -> Result<()> {
    let driver = runner.read(&as_user(
        crate::engine::podman::PROGRAM,
        &[
            "info".into(),
            "--format".into(),
            "{{.Store.GraphDriverName}}".into(),
        ],
    ))?;
    if driver.trim() == "vfs" {
        eprintln!("test: {ROOTLESS_USER}'s podman storage is on vfs; resetting it (overlay next)");
        runner.run(&as_user(
            crate::engine::podman::PROGRAM,
            &["system".into(), "reset".into(), "--force".into()],
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lane_containers_of_a_gone_xtask_are_orphans() {
        let alive = |pid: u32| pid == 42;
        assert!(!orphaned("rc-lane-42", alive));
        assert!(orphaned("rc-lane-43", alive));
        assert!(!orphaned("rc-lane-web", alive));
        assert!(!orphaned("rc-web-e2e-linux-amd64-43", alive));
    }

    #[test]
    fn every_lane_test_exists_in_its_target() {
        // A renamed test would otherwise run nothing in a lane ("0 passed").
        let tests_directory = project::root().join("xtask/tests");
        for (target, name) in PODMAN5_TESTS.iter().chain(ROOTLESS_TESTS) {
            let source = std::fs::read_to_string(tests_directory.join(format!("{target}.rs")))
                .unwrap_or_else(|error| panic!("{target}.rs: {error}"));
            assert!(
                source.contains(&format!("fn {name}()")),
                "{target}.rs has no test {name}"
            );
        }
    }

    #[test]
    fn the_podman5_environment_has_every_package_setup_wants() {
        // Else setup, run in the lane as on a new Debian 13 machine, would
        // install them in every run.
        let recipe = base_images::Recipe::load(&project::root().join(PODMAN5_RECIPE)).unwrap();
        let include = recipe
            .mmdebstrap_options
            .iter()
            .find_map(|option| option.strip_prefix("--include="))
            .unwrap();
        let included: Vec<&str> = include.split(',').collect();
        for package in crate::setup::PACKAGES
            .iter()
            .filter(|package| **package != "podman")
        {
            assert!(
                included.contains(package),
                "{package} is missing from {PODMAN5_RECIPE}"
            );
        }
        for package in ["podman", "buildah", "crun", "runc", "nftables"] {
            assert!(included.contains(&package), "{package}");
        }
        assert_eq!(recipe.suite, "trixie");
    }
}
