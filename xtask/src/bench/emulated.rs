//! Figure 1: rc-web's arm64 image compiled under qemu, against the same image
//! cross-compiled.
//!
//! The emulated side is the shipped Containerfile with its compile stage on
//! the target platform, built on an arm64 Rust toolchain image that is made
//! under qemu beforehand and not timed. It is measured under the qemu-user
//! this machine has registered and, when Debian's backports have a newer
//! one, under that too (registered for its measurement only), so that the
//! ratio is not flattered by an old emulator.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{seconds, Bench, Figure, Target, BENCH_REPOSITORY};
use crate::{
    base_images,
    engine::podman,
    engine::HOST_CA_BUNDLE,
    exec::{Command, Runner},
    platform::{Arch, Platform},
    project,
};

const NAME: &str = "arm64 rc-web image: compile under qemu emulation / cross-compile";
const BACKPORTED_NAME: &str =
    "the same, compiled under the newest qemu-user in Debian's archive (backports)";
const TARGET: Target = Target::AtLeast(10.0);

/// The figure's rows: the registered qemu-user, then the backported one when
/// it is another version (or why it was not measured).
pub(super) fn figures(
    bench: &Bench,
    build_platform: Platform,
    arm64_clean: Duration,
) -> Result<Vec<Figure>> {
    let denominator = format!(
        "cross-compiled (shipped Containerfile), clean: {}",
        seconds(arm64_clean)
    );
    if bench.quick {
        return Ok(vec![Figure {
            name: NAME,
            numerator: "skipped in --quick (the emulated compile takes tens of minutes)".into(),
            denominator,
            value: None,
            target: TARGET,
            runs: "1".into(),
        }]);
    }
    let runner = bench.runner;
    let debian_arm64 = debian_arm64(bench, build_platform)?;
    let toolchain = toolchain(bench, &debian_arm64)?;
    let measured = |name: &'static str, qemu: &str| -> Result<Figure> {
        let emulated = emulated_arm64_build(bench, build_platform, &toolchain)?;
        Ok(Figure {
            name,
            numerator: format!(
                "compiled in an arm64 stage under qemu-user {qemu}, clean: {}",
                seconds(emulated)
            ),
            denominator: denominator.clone(),
            value: Some(emulated.as_secs_f64() / arm64_clean.as_secs_f64()),
            target: TARGET,
            runs: "1 each".into(),
        })
    };

    let registered = emulator_version(runner, &debian_arm64)?;
    let mut figures = vec![measured(NAME, &registered)?];
    let scratch = project::TemporaryDirectory::create("rc-bench-qemu")?;
    match backported_qemu(runner, scratch.path()) {
        Ok((_, version)) if version == registered => {
            eprintln!("bench: the backported qemu-user is {version} too: one row");
        }
        Ok((interpreter, version)) => {
            let registration = Registration::first(&interpreter)?;
            let running = emulator_version(runner, &debian_arm64)?;
            if running != version {
                bail!(
                    "qemu-user {version} was registered with binfmt_misc, \
                     but arm64 containers still run under {running}"
                );
            }
            figures.push(measured(BACKPORTED_NAME, &version)?);
            drop(registration);
        }
        Err(error) => {
            eprintln!("bench: no backported qemu-user to measure: {error:#}");
            figures.push(Figure {
                name: BACKPORTED_NAME,
                numerator: format!("not measured: {error:#}"),
                denominator,
                value: None,
                target: TARGET,
                runs: "0".into(),
            });
        }
    }
    Ok(figures)
}

/// Debian arm64 from the Debian archive (mmdebstrap under qemu), made unless
/// this machine has it.
fn debian_arm64(bench: &Bench, build_platform: Platform) -> Result<String> {
    let runner = bench.runner;
    let debian = base_images::Recipe::load(&project::own_file(project::DEBIAN_RECIPE)?)?;
    let debian_arm64 = debian.image_for(Arch::Arm64);
    if build_platform.arch != Arch::Arm64
        && !runner.succeeds(&podman::image_exists(&debian_arm64))?
    {
        let tarball = bench.clone.parent().unwrap().join("debian-arm64.tar");
        runner.run(&debian.mmdebstrap(Arch::Arm64, &tarball))?;
        runner.run(&debian.import(Arch::Arm64, &tarball))?;
        let _ = std::fs::remove_file(tarball);
    }
    Ok(debian_arm64)
}

/// The arm64 Rust toolchain of the emulated side: the shipped builder
/// Containerfile built for arm64 under qemu, except for cargo-auditable,
/// which is cross-compiled for arm64 on the build platform (compiling it
/// under qemu took longer than everything else). Kept between runs.
fn toolchain(bench: &Bench, debian_arm64: &str) -> Result<String> {
    let runner = bench.runner;
    let toolchain = format!("{BENCH_REPOSITORY}/rust-builder-arm64:bookworm");
    if runner.succeeds(&podman::image_exists(&toolchain))? {
        return Ok(toolchain);
    }
    let shipped_path = project::own_file(project::BUILDER_CONTAINERFILE)?;
    let shipped = std::fs::read_to_string(&shipped_path)
        .with_context(|| format!("cannot read {}", shipped_path.display()))?;
    let install = cargo_auditable_install(&shipped)?;
    let scratch = bench.clone.parent().unwrap();
    let cross = scratch.join("cargo-auditable-arm64");
    std::fs::create_dir_all(&cross)?;
    runner.run(
        &Command::new(podman::PROGRAM)
            .args(["run", "--rm"])
            .args(["--volume", &format!("{}:/out", cross.display())])
            .args(["--volume", &format!("{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro")])
            .args(["--env", &format!("CARGO_HTTP_CAINFO={HOST_CA_BUNDLE}")])
            .arg(project::BUILDER_IMAGE)
            .args(["cargo", "install", "--locked", "--root", "/out", "--target"])
            .arg(format!("{}-unknown-linux-gnu", Arch::Arm64.uname_machine()))
            .args(["cargo-auditable", "--version", install.version]),
    )?;
    let containerfile = scratch.join("Containerfile.rust-builder-arm64");
    std::fs::write(&containerfile, toolchain_containerfile(&shipped)?)?;
    runner.run(
        &Command::new(podman::PROGRAM)
            .args(["build", "--platform", "linux/arm64", "--tag", &toolchain])
            .args(["--build-arg", &format!("DEBIAN_IMAGE={debian_arm64}")])
            .args(["--volume", &format!("{}:/cross:ro", cross.display())])
            .args(["--secret", &format!("id=ca-bundle,src={HOST_CA_BUNDLE}")])
            .args(["--file", &containerfile.to_string_lossy()])
            .arg(shipped_path.parent().unwrap().to_string_lossy()),
    )?;
    Ok(toolchain)
}

/// The builder Containerfile's `cargo install` of cargo-auditable: the
/// command (up to its `;`) and the version it pins.
#[derive(Debug, PartialEq)]
struct CargoAuditableInstall<'a> {
    command: &'a str,
    version: &'a str,
}

fn cargo_auditable_install(containerfile: &str) -> Result<CargoAuditableInstall<'_>> {
    let line = containerfile
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("cargo install ") && line.contains(" cargo-auditable "))
        .context("the builder Containerfile has no `cargo install ... cargo-auditable` line")?;
    let command = line.split(';').next().unwrap_or(line).trim();
    let mut words = command.split_whitespace();
    words
        .by_ref()
        .find(|word| *word == "--version")
        .context("the builder Containerfile's cargo-auditable install pins no --version")?;
    let version = words
        .next()
        .context("the builder Containerfile's cargo-auditable --version has no value")?;
    Ok(CargoAuditableInstall { command, version })
}

/// The builder Containerfile with its `cargo install` of cargo-auditable
/// replaced by a copy of the cross-compiled binary (mounted at `/cross`).
fn toolchain_containerfile(shipped: &str) -> Result<String> {
    let install = cargo_auditable_install(shipped)?;
    Ok(shipped.replace(
        install.command,
        "install -D -m 0755 /cross/bin/cargo-auditable /usr/local/bin/cargo-auditable",
    ))
}

/// The version of the qemu-user that arm64 containers run under, as they
/// report it (`QEMU_VERSION` makes qemu-user print its version and exit).
fn emulator_version(runner: &Runner, arm64_image: &str) -> Result<String> {
    let output = runner.read(
        &Command::new(podman::PROGRAM)
            .args(["run", "--rm", "--platform", "linux/arm64"])
            .args(["--env", "QEMU_VERSION=1", arm64_image, "/bin/true"]),
    )?;
    qemu_version(&output).with_context(|| {
        format!("arm64 containers do not run under qemu-user here (they printed {output:?})")
    })
}

/// `7.2.22` from `qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7)`.
fn qemu_version(output: &str) -> Option<String> {
    let mut words = output.lines().next()?.split_whitespace();
    words.find(|word| *word == "version")?;
    words.next().map(str::to_owned)
}

/// qemu-user's arm64 interpreter from the Debian archive's backports of this
/// machine's release, unpacked into `directory` (not installed: the
/// machine's own qemu stays as it is), and its version.
fn backported_qemu(runner: &Runner, directory: &Path) -> Result<(PathBuf, String)> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"'))
        .filter(|name| !name.is_empty())
        .context("/etc/os-release names no Debian release (VERSION_CODENAME)")?;
    for program in ["apt-get", "dpkg-deb"] {
        which::which(program)
            .with_context(|| format!("{program} is not installed: not a Debian machine"))?;
    }
    let lists = directory.join("lists");
    std::fs::create_dir_all(lists.join("partial"))?;
    let sources = directory.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb http://deb.debian.org/debian {codename}-backports main\n"),
    )?;
    // apt with a sources list and package lists of its own: the machine's
    // apt configuration and state are not touched.
    let apt = |subcommand: &[&str]| {
        Command::new("apt-get")
            .arg("--quiet")
            .args([
                "-o",
                &format!("Dir::Etc::SourceList={}", sources.display()),
                "-o",
                "Dir::Etc::SourceParts=/dev/null",
                "-o",
                &format!("Dir::State::Lists={}", lists.display()),
                "-o",
                "Dir::Cache::pkgcache=",
                "-o",
                "Dir::Cache::srcpkgcache=",
                "-o",
                "APT::Sandbox::User=root",
            ])
            .args(subcommand.iter().copied())
            .current_dir(directory)
    };
    runner.run(&apt(&["update"]))?;
    runner
        .run(&apt(&[
            "download",
            &format!("qemu-user/{codename}-backports"),
        ]))
        .with_context(|| format!("{codename}-backports has no qemu-user"))?;
    let package = std::fs::read_dir(directory)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .context("apt-get download left no .deb")?;
    let unpacked = directory.join("root");
    runner.run(
        &Command::new("dpkg-deb")
            .arg("--extract")
            .arg(package.to_string_lossy())
            .arg(unpacked.to_string_lossy()),
    )?;
    let interpreter = unpacked.join("usr/bin/qemu-aarch64");
    let output = runner.read(&Command::new(interpreter.to_string_lossy()).arg("--version"))?;
    let version = qemu_version(&output)
        .with_context(|| format!("{} printed no version", interpreter.display()))?;
    Ok((interpreter, version))
}

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// The machine's entry for arm64 binaries, which ours copies.
const MACHINE_ENTRY: &str = "qemu-aarch64";
const OUR_ENTRY: &str = "rc-bench-qemu-aarch64";

/// An interpreter registered with binfmt_misc ahead of the machine's, for
/// arm64 binaries, until dropped. The kernel tries the newest entry first;
/// with the `F` flag it opens the interpreter now, so containers use it too.
struct Registration {
    entry: PathBuf,
}

impl Registration {
    fn first(interpreter: &Path) -> Result<Registration> {
        let entry = Path::new(BINFMT_DIR).join(OUR_ENTRY);
        // One an interrupted run left.
        if entry.exists() {
            std::fs::write(&entry, "-1")?;
        }
        let machine = Path::new(BINFMT_DIR).join(MACHINE_ENTRY);
        let current = std::fs::read_to_string(&machine).with_context(|| {
            format!(
                "cannot read {}: is qemu-user registered?",
                machine.display()
            )
        })?;
        let rule = binfmt_rule(&current, OUR_ENTRY, interpreter)?;
        std::fs::write(Path::new(BINFMT_DIR).join("register"), rule).with_context(|| {
            format!(
                "cannot register {} with binfmt_misc (that needs root)",
                interpreter.display()
            )
        })?;
        eprintln!(
            "bench: registered {} for arm64 binaries",
            interpreter.display()
        );
        Ok(Registration { entry })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if std::fs::write(&self.entry, "-1").is_ok() {
            eprintln!("bench: the machine's qemu-user runs arm64 binaries again");
        } else {
            eprintln!(
                "bench: WARNING: cannot remove {}; remove it with `echo -1 > {}`",
                self.entry.display(),
                self.entry.display()
            );
        }
    }
}

/// A `register` line for `interpreter` matching what the machine's entry
/// (`/proc/sys/fs/binfmt_misc/qemu-aarch64`, as read) matches, with its
/// flags.
fn binfmt_rule(entry: &str, name: &str, interpreter: &Path) -> Result<String> {
    let field = |key: &str| {
        entry
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(str::trim)
            .with_context(|| format!("the binfmt_misc entry has no `{}` line", key.trim()))
    };
    let escaped = |hex: &str| -> Result<String> {
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            bail!("the binfmt_misc entry has a malformed byte string: {hex}");
        }
        Ok((0..hex.len())
            .step_by(2)
            .map(|at| format!("\\x{}", &hex[at..at + 2]))
            .collect())
    };
    Ok(format!(
        ":{name}:M:{}:{}:{}:{}:{}",
        field("offset ")?,
        escaped(field("magic ")?)?,
        escaped(field("mask ")?)?,
        interpreter.display(),
        field("flags:")?,
    ))
}

/// The shipped Containerfile with its compile stage on the target platform:
/// rc-web compiled in an arm64 stage, under qemu, on `toolchain`.
fn emulated_arm64_build(
    bench: &Bench,
    build_platform: Platform,
    toolchain: &str,
) -> Result<Duration> {
    let emulated =
        emulated_containerfile(&std::fs::read_to_string(&bench.workload.containerfile)?)?;
    let containerfile = bench.clone.parent().unwrap().join("Containerfile.emulated");
    std::fs::write(&containerfile, emulated)?;
    bench.timed(
        &Command::new(podman::PROGRAM)
            .args(["build", "--no-cache", "--platform", "linux/arm64"])
            .args(["--build-arg", &format!("BUILDPLATFORM={build_platform}")])
            .args(["--build-arg", &format!("BUILDER_IMAGE={toolchain}")])
            // arm64 alone, as the cross-compiled side builds it.
            .args(["--build-arg", "RUST_TARGETS=arm64"])
            // As the xtask's builds do: cargo's downloads need the host's CAs.
            .args(["--volume", &format!("{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro")])
            .args(["--tag", &format!("{BENCH_REPOSITORY}/emulated:arm64")])
            .args(["--file", &containerfile.to_string_lossy()])
            .arg(bench.clone.to_string_lossy()),
    )
}

/// The shipped (staged) Containerfile with its compile stage on the target
/// platform, and its three builds made one (the later stages name the
/// earlier ones instead of importing their images): one `podman build`
/// compiles everything under qemu.
fn emulated_containerfile(shipped: &str) -> Result<String> {
    let mut emulated = shipped.to_owned();
    for (from, to) in [
        // The toolchain image is arm64 only: every stage on it runs there.
        (
            "FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS rust-targets",
            "FROM --platform=$TARGETPLATFORM ${BUILDER_IMAGE} AS rust-targets",
        ),
        // One build, one context: the dependency stage copies what its own
        // build's ignore file admits, path by path, as the cross side does.
        (
            "COPY . ./\n",
            "COPY Cargo.toml Cargo.lock ./\nCOPY rc-web/Cargo.toml rc-web/Cargo.toml\n\
             COPY rc-web/server rc-web/server\nCOPY xtask/Cargo.toml xtask/Cargo.toml\n",
        ),
        (
            "FROM --platform=$BUILDPLATFORM ${DEPENDENCIES_IMAGE} AS",
            "FROM dependencies AS",
        ),
        (
            "FROM --platform=$TARGETPLATFORM ${LIBRARY_IMAGE}",
            "FROM library",
        ),
    ] {
        if !emulated.contains(from) {
            bail!("the shipped Containerfile has no `{from}` line to turn into `{to}`");
        }
        emulated = emulated.replace(from, to);
    }
    Ok(emulated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulated_variant_is_one_build_with_every_stage_on_the_target() {
        let shipped = include_str!("../../../containers/rc-web/Containerfile");
        let emulated = emulated_containerfile(shipped).unwrap();
        let froms: Vec<&str> = emulated
            .lines()
            .filter(|line| line.starts_with("FROM "))
            .collect();
        assert_eq!(
            froms,
            [
                "FROM --platform=$TARGETPLATFORM ${BUILDER_IMAGE} AS rust-targets",
                "FROM rust-targets AS dependencies",
                "FROM dependencies AS compiled-dependencies",
                "FROM --platform=$TARGETPLATFORM ${RUNTIME_IMAGE} AS library",
                "FROM dependencies AS build",
                "FROM library",
            ]
        );
        assert!(!emulated.contains("COPY . ./"), "{emulated}");
        assert!(emulated.contains("COPY rc-web/server rc-web/server\n"));
        assert!(emulated_containerfile("FROM scratch\n").is_err());
    }

    #[test]
    fn the_emulated_toolchain_copies_cargo_auditable_instead_of_compiling_it() {
        let shipped = include_str!("../../../containers/rust-builder/Containerfile");
        let install = cargo_auditable_install(shipped).unwrap();
        assert!(install.command.starts_with("cargo install "));
        assert!(semver::Version::parse(install.version).is_ok());
        let toolchain = toolchain_containerfile(shipped).unwrap();
        assert!(!toolchain.contains("cargo install"));
        assert!(toolchain.contains("/cross/bin/cargo-auditable /usr/local/bin/cargo-auditable;"));
        // Everything else is the shipped file's: the apt steps, and the
        // check that cargo-auditable runs.
        assert_eq!(
            toolchain.lines().count(),
            shipped.lines().count(),
            "one command replaced in place"
        );
        assert!(toolchain.contains("cargo auditable --version"));
        assert!(cargo_auditable_install("FROM scratch\n").is_err());
        assert!(cargo_auditable_install("RUN cargo install cargo-auditable ;\n").is_err());
    }

    #[test]
    fn qemu_reports_its_version_on_the_first_line() {
        assert_eq!(
            qemu_version(
                "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n\
                 Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
            )
            .as_deref(),
            Some("7.2.22")
        );
        assert_eq!(qemu_version("Linux\n"), None);
        assert_eq!(qemu_version(""), None);
    }

    #[test]
    fn our_binfmt_rule_matches_what_the_machines_entry_matches() {
        let machine = "enabled\n\
            interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
            flags: POF\n\
            offset 0\n\
            magic 7f454c460201010000000000000000000200b700\n\
            mask ffffffffffffff00fffffffffffffffffeffffff\n";
        let rule = binfmt_rule(machine, "ours", Path::new("/tmp/q/qemu-aarch64")).unwrap();
        assert_eq!(
            rule,
            ":ours:M:0:\
             \\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\
             \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:\
             /tmp/q/qemu-aarch64:POF"
        );
        assert!(binfmt_rule("enabled\n", "ours", Path::new("/q")).is_err());
        let odd = machine.replace("magic 7f45", "magic 7f4");
        assert!(binfmt_rule(&odd, "ours", Path::new("/q")).is_err());
    }
}
