//! What the machine must have before a build: podman, mmdebstrap, qemu's
//! registration for emulated platforms, and (rootless) what only root can
//! give; `setup` is run for what it can fix, unless `--no-setup`.

use anyhow::{Context, Result};

use crate::{engine::Engine, exec::Runner, platform::Platform, setup};

/// Runs setup when something the build needs is missing from this machine,
/// or (with `--no-setup`) refuses, naming what is missing and the fix.
pub fn prepare_machine(
    runner: &Runner,
    platforms: &[Platform],
    may_run_setup: bool,
    force: bool,
) -> Result<&'static Engine> {
    let missing = missing_on_machine(runner, platforms)?;
    if !missing.is_empty() {
        if !may_run_setup {
            return Err(crate::BadInput(missing).into());
        }
        eprintln!(
            "build-image: this machine is not ready:\n  - {}\nbuild-image: running setup first",
            missing.join("\n  - ")
        );
        setup::run(runner, false).context("setup failed, so the build cannot start")?;
    }
    check_engine(runner, force)
}

fn missing_on_machine(runner: &Runner, platforms: &[Platform]) -> Result<Vec<String>> {
    let not_installed = |tool: &str| {
        format!("{tool} is not installed (or not on PATH); run `sudo cargo xtask setup`")
    };
    if which::which("podman").is_err() {
        return Ok(vec![not_installed("podman")]);
    }
    let mut missing = Vec::new();
    let engine = Engine::read(runner)?;
    // A remote engine (podman machine, `CONTAINER_HOST`) emulates and
    // stores on its own side; its base images come through its socket
    // (`base-images --import`, or made here when mmdebstrap is here).
    if engine.shares_this_host() {
        if which::which("mmdebstrap").is_err() {
            missing.push(not_installed("mmdebstrap"));
        }
        let build_platform = engine.build_platform;
        for arch in setup::emulated_architectures(build_platform) {
            if platforms.iter().any(|platform| platform.arch == arch)
                && !setup::binfmt_registered(arch)
            {
                missing.push(format!(
                    "{} runs under qemu emulation on this {build_platform} machine, but no qemu \
                     binfmt_misc handler is registered for it; run `sudo cargo xtask setup`, or build \
                     {build_platform} only (BUILD_PLATFORMS={build_platform})",
                    Platform::linux(arch)
                ));
            }
        }
    }
    Ok(missing)
}

/// What rootless podman needs from root, checked before anything is built;
/// each problem names the command root runs once (`setup` runs them all).
/// Not offered to setup: only root can change these.
fn rootless_problems(engine: &Engine, tun_usable: bool, force: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if engine.needs_tun_device() && !tun_usable {
        problems.push(format!(
            "rootless podman's RUN steps need {0} (their network), which this user cannot \
             open; run once as root: `chmod 0666 {0}` (or `sudo cargo xtask setup`)",
            setup::TUN_DEVICE
        ));
    }
    if engine.lacks_subordinate_ids() {
        let user = std::env::var("USER").unwrap_or_else(|_| "USER".to_owned());
        problems.push(format!(
            "rootless podman has no subordinate IDs for this user (/etc/subuid, /etc/subgid), \
             so images with files of other owners cannot be unpacked; run once as root: \
             `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`, then \
             as {user}: `podman system migrate`"
        ));
    }
    if engine.copies_every_layer() && !force {
        problems.push(
            "podman stores images here with the vfs driver, which copies every layer in full \
             (about 100 times the disk of overlay; podman#18197). Use overlay: \
             `sudo cargo xtask setup` installs fuse-overlayfs, then run `podman system reset` \
             (it deletes this user's images) so podman picks overlay; or pass --force to build \
             on vfs anyway"
                .to_owned(),
        );
    }
    problems
}

/// The engine this run builds with, once it passed; read here, after
/// setup had its chance to install or configure podman.
fn check_engine(runner: &Runner, force: bool) -> Result<&'static Engine> {
    let engine = Engine::read(runner)?;
    let mut problems = Vec::new();
    if !engine.builds_manifest_lists() {
        problems.push(format!(
            "podman {} is too old: multi-platform `build --manifest` needs podman >= {}; \
             upgrade podman (Debian 12 ships 4.3, Ubuntu 24.04 4.9)",
            engine.version,
            crate::engine::MINIMUM_VERSION
        ));
    }
    problems.extend(rootless_problems(engine, setup::tun_device_usable(), force));
    if !problems.is_empty() {
        return Err(crate::BadInput(problems).into());
    }
    if engine.copies_every_layer() {
        eprintln!(
            "build-image: warning: building on podman's vfs storage driver (--force): every \
             layer is a full copy"
        );
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootless_user_is_told_the_root_command_for_what_is_missing() {
        let engine = |rootless: bool, driver: &str| Engine {
            version: semver::Version::new(4, 3, 1),
            build_platform: Platform::LINUX_AMD64,
            rootless,
            remote: false,
            storage_driver: driver.into(),
            cgroups_v1: true,
            run_root: "/tmp/podman-run-1001/containers".into(),
            mapped_uids: 65537,
        };
        let problems = rootless_problems(&engine(true, "vfs"), false, false);
        assert_eq!(problems.len(), 2, "{problems:?}");
        if std::env::consts::OS == "linux" {
            assert!(
                problems[0].contains("chmod 0666 /dev/net/tun"),
                "{problems:?}"
            );
        }
        assert!(
            problems[1].contains("vfs") && problems[1].contains("podman system reset"),
            "{problems:?}"
        );
        // --force builds on vfs anyway; a usable tun device and overlay are fine.
        assert_eq!(
            rootless_problems(&engine(true, "vfs"), true, true),
            Vec::<String>::new()
        );
        assert!(rootless_problems(&engine(true, "overlay"), true, false).is_empty());
        let unmapped = Engine {
            mapped_uids: 1,
            ..engine(true, "overlay")
        };
        let problems = rootless_problems(&unmapped, true, false);
        assert!(
            problems.len() == 1 && problems[0].contains("usermod --add-subuids"),
            "{problems:?}"
        );
        // Root needs no tun device.
        assert!(rootless_problems(&engine(false, "overlay"), false, false).is_empty());
    }
}
