//! Prepares a machine to build: packages, podman configuration, qemu binfmt
//! registration, cargo-make. Each step says what it found and skips what is
//! already in place, so running it again changes nothing.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use crate::{
    exec::{Command, Runner, Step},
    platform::{Arch, Platform, SUPPORTED},
};

/// Debian packages the pipeline and its tests use.
pub const PACKAGES: &[&str] = &[
    "podman",
    "runc",
    "qemu-user-static",
    "mmdebstrap",
    "docker-registry",
    "skopeo",
    "apache2-utils",
    "ca-certificates",
    // The end-to-end tests make tagged clones with it.
    "git",
    // mmdebstrap verifies the Debian archive with it (not preinstalled on Ubuntu).
    "debian-archive-keyring",
    // Rootless podman: subordinate ID mapping (newuidmap), the network of
    // RUN steps, and overlay storage where the kernel's own is refused.
    "uidmap",
    "slirp4netns",
    "fuse-overlayfs",
    // Its storage.conf names the overlay driver. Without it, rootless podman
    // 4.3 on Debian 12 stores every layer as a full copy (vfs) although the
    // kernel's own overlay works for unprivileged users.
    "containers-storage",
];

/// The device rootless podman makes its containers' network with.
pub const TUN_DEVICE: &str = "/dev/net/tun";

const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";
const MANAGED_MARKER: &str = "# Managed by `cargo xtask setup`";
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Podman's rootful defaults; a hard limit below these makes `podman run` fail.
const PODMAN_DEFAULT_NOFILE: u64 = 1_048_576;
const PODMAN_DEFAULT_NPROC: u64 = 4_194_304;
/// Seen to work where podman's default nproc is refused.
const SAFE_NPROC: u64 = 4096;

pub fn run(runner: &Runner, with_cargo_make: bool) -> Result<()> {
    match std::env::consts::OS {
        "linux" => {}
        "macos" => {
            print_macos_steps();
            return Ok(());
        }
        other => {
            bail!("setup supports Debian/Ubuntu Linux and prints steps for macOS; this is {other}")
        }
    }
    if !Path::new("/etc/debian_version").exists() {
        bail!(
            "setup installs with apt on Debian/Ubuntu; on this Linux install podman (>= {}), runc, \
             qemu-user-static (with binfmt registered), mmdebstrap and skopeo with your package manager",
            crate::engine::MINIMUM_VERSION
        );
    }
    let is_root = fs::metadata("/proc/self")
        .map(|metadata| metadata.uid() == 0)
        .unwrap_or(false);
    install_packages(runner, is_root)?;
    install_cosign(runner, is_root)?;
    configure_podman(runner, is_root)?;
    register_binfmt(runner, is_root)?;
    open_tun_device(runner, is_root)?;
    if with_cargo_make {
        install_cargo_make(runner)?;
    }
    check_podman(runner)
}

fn print_macos_steps() {
    eprintln!(
        "setup: on macOS podman runs in a Linux VM. Run these once:\n\
         \n    brew install podman\n    podman machine init\n    podman machine start\n\
         \nThe VM (Fedora CoreOS) can run arm64 and amd64 images already. Then:\n\
         \n    {} build-image\n",
        crate::project::command_name()
    );
}

fn require_root(is_root: bool, what: &str, commands: &str) -> Result<()> {
    if is_root {
        return Ok(());
    }
    bail!("setup needs root to {what}; run as root (e.g. `sudo -E \"$(command -v cargo)\" xtask setup`) or run:\n{commands}")
}

fn missing_packages(runner: &Runner) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for &package in PACKAGES {
        let query = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", package]);
        let installed = runner
            .read(&query)
            .map(|status| status.starts_with("ii"))
            .unwrap_or(false);
        if !installed {
            missing.push(package);
        }
    }
    Ok(missing)
}

fn install_packages(runner: &Runner, is_root: bool) -> Result<()> {
    let missing = missing_packages(runner)?;
    if missing.is_empty() {
        eprintln!("setup: packages: all present ({})", PACKAGES.join(" "));
        return Ok(());
    }
    eprintln!("setup: packages: installing {}", missing.join(" "));
    let install = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(missing.iter().copied());
    require_root(
        is_root,
        "install packages",
        &format!("    apt-get update && {install}"),
    )?;
    runner.run(&Command::new("apt-get").arg("update"))?;
    runner
        .run(&install)
        .context("cannot install the packages the pipeline needs")
}

/// The Debian release that packages cosign (2.5).
const COSIGN_SUITE: &str = "trixie";

/// cosign signs and verifies releases. Debian 13 packages it; Debian 12 and
/// Ubuntu 24.04 do not, and the package needs only libc6 >= 2.34, so there
/// it is fetched from Debian 13 with an apt configuration of its own (this
/// machine's sources stay as they are: adding Debian 13 to them would
/// upgrade libc) and installed with dpkg.
fn install_cosign(runner: &Runner, is_root: bool) -> Result<()> {
    if let Ok(path) = which::which("cosign") {
        eprintln!("setup: cosign: {}", path.display());
        return Ok(());
    }
    let candidate = runner
        .read(&Command::new("apt-cache").args(["policy", "cosign"]))
        .unwrap_or_default();
    let packaged = candidate
        .lines()
        .any(|line| line.trim_start().starts_with("Candidate:") && !line.contains("(none)"));
    let other_suite = OtherSuite {
        directory: std::env::temp_dir().join(format!("rc-xtask-cosign-{}", std::process::id())),
    };
    let install = if packaged {
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", "cosign"])
    } else {
        other_suite
            .apt("download")
            .arg("cosign")
            .current_dir(&other_suite.directory)
    };
    require_root(
        is_root,
        "install cosign",
        &format!(
            "    {install}{}",
            if packaged {
                String::new()
            } else {
                format!(
                    " (with deb http://deb.debian.org/debian {COSIGN_SUITE} main in its own \
                     sources.list; then dpkg -i cosign_*.deb)"
                )
            }
        ),
    )?;
    if packaged {
        eprintln!("setup: cosign: installing Debian's package");
        return runner.run(&install).context("cannot install cosign");
    }
    eprintln!("setup: cosign: installing Debian {COSIGN_SUITE}'s package (this release has none)");
    let result = runner.execute(other_suite.install(install));
    let _ = fs::remove_dir_all(&other_suite.directory);
    result.context("cannot install cosign")
}

/// apt-get on a sources list of its own in `directory` (Debian
/// [`COSIGN_SUITE`] alone): what this release lacks is downloaded from there
/// and installed with dpkg, and nothing else of the machine's apt changes.
struct OtherSuite {
    directory: std::path::PathBuf,
}

impl OtherSuite {
    fn apt(&self, verb: &str) -> Command {
        let directory = &self.directory;
        Command::new("apt-get")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                directory.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null"])
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                directory.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", directory.join("cache").display()))
            .args(["-o", "Dir::Etc::Preferences=/dev/null"])
            .args(["-o", "Dir::Etc::PreferencesParts=/dev/null"])
            // The download lands in a root-only directory.
            .args(["-o", "APT::Sandbox::User=root"])
            .arg(verb)
    }

    /// Its lists, then `download` (the package), then dpkg.
    /// Its sources, the package downloaded from them, and installed.
    fn install(&self, download: Command) -> Vec<Step<'_>> {
        let directory = &self.directory;
        vec![
            Step::work(
                format!(
                    "{} lists deb http://deb.debian.org/debian {COSIGN_SUITE} main",
                    directory.join("sources.list").display()
                ),
                move |_, _| {
                    for partial in ["lists/partial", "cache/archives/partial"] {
                        fs::create_dir_all(directory.join(partial))?;
                    }
                    fs::write(
                        directory.join("sources.list"),
                        format!("deb http://deb.debian.org/debian {COSIGN_SUITE} main\n"),
                    )?;
                    Ok(())
                },
            ),
            Step::run(self.apt("update")),
            Step::run(download),
            Step::run_with(
                Command::new("dpkg")
                    .arg("-i")
                    .arg(format!("{}/cosign_*.deb", directory.display())),
                move |runner, _, prefix| {
                    let package = fs::read_dir(directory)?
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
                        .context("apt-get download wrote no cosign package")?;
                    let install = Command::new("dpkg")
                        .arg("-i")
                        .arg(package.to_string_lossy());
                    runner.run_prefixed(&install, prefix)
                },
            ),
        ]
    }
}

/// The containers.conf this machine needs, or `None` when podman's defaults work.
pub fn wanted_containers_conf(cgroup_root: &Path, limits: &str) -> Option<String> {
    let mut containers = Vec::new();
    let mut engine = Vec::new();
    // crun refuses cgroup v1 and hybrid hierarchies ("cgroups in hybrid mode not
    // supported"); runc handles them.
    let unified_only = cgroup_root.join("cgroup.controllers").exists();
    if !unified_only {
        engine.push("runtime = \"runc\"".to_owned());
    }
    let nofile = hard_limit(limits, "Max open files");
    let nproc = hard_limit(limits, "Max processes");
    let nofile_too_low = nofile.is_some_and(|limit| limit < PODMAN_DEFAULT_NOFILE);
    let nproc_too_low = nproc.is_some_and(|limit| limit < PODMAN_DEFAULT_NPROC);
    if nofile_too_low || nproc_too_low {
        let nofile = nofile
            .unwrap_or(PODMAN_DEFAULT_NOFILE)
            .min(PODMAN_DEFAULT_NOFILE);
        let nproc = nproc.unwrap_or(SAFE_NPROC).min(SAFE_NPROC);
        containers.push(format!(
            "default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]"
        ));
    }
    if containers.is_empty() && engine.is_empty() {
        return None;
    }
    let mut text = format!(
        "{MANAGED_MARKER}: podman's defaults fail on this machine\n\
         # (runtime: crun needs a pure cgroup v2 hierarchy; ulimits: podman's defaults\n\
         # exceed this machine's hard limits). Delete this file to manage it yourself.\n"
    );
    for (section, lines) in [("containers", containers), ("engine", engine)] {
        if !lines.is_empty() {
            text.push_str(&format!("\n[{section}]\n{}\n", lines.join("\n")));
        }
    }
    Some(text)
}

/// Reads a hard limit from `/proc/self/limits` text; `None` for "unlimited".
fn hard_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().nth(1)?.parse().ok()
}

fn configure_podman(runner: &Runner, is_root: bool) -> Result<()> {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(wanted) = wanted_containers_conf(Path::new("/sys/fs/cgroup"), &limits) else {
        eprintln!("setup: containers.conf: podman's defaults work here; nothing to configure");
        return Ok(());
    };
    let path = PathBuf::from(CONTAINERS_CONF);
    let current = fs::read_to_string(&path).ok();
    match current {
        Some(text) if text == wanted => {
            eprintln!("setup: containers.conf: {CONTAINERS_CONF} already configured");
            return Ok(());
        }
        Some(text) if !text.starts_with(MANAGED_MARKER) => {
            eprintln!(
                "setup: containers.conf: {CONTAINERS_CONF} is yours, so it is left alone; \
                 podman may need these settings in it:\n{wanted}"
            );
            return Ok(());
        }
        _ => {}
    }
    eprintln!(
        "setup: containers.conf: writing {CONTAINERS_CONF} (runc runtime and/or lower ulimits)"
    );
    require_root(
        is_root,
        "write /etc/containers/containers.conf",
        &format!("    cat > {CONTAINERS_CONF} <<'EOF'\n{wanted}EOF"),
    )?;
    let shown = wanted.trim_end().replace('\n', "\n#   ");
    runner.execute(vec![Step::work(
        format!("{CONTAINERS_CONF} is written:\n#   {shown}"),
        |_, _| {
            fs::create_dir_all("/etc/containers").context("cannot create /etc/containers")?;
            fs::write(&path, wanted).with_context(|| format!("cannot write {CONTAINERS_CONF}"))
        },
    )])
}

/// True when this user can open the tun device read-write (rootless
/// podman's slirp4netns and pasta need to).
pub fn tun_device_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .is_ok()
}

/// Whether a device's mode lets every user read and write it.
fn open_to_everyone(mode: u32) -> bool {
    mode & 0o006 == 0o006
}

/// Debian and Ubuntu make the tun device 0666; some machines have it 0600,
/// where every RUN step of a rootless build fails (slirp4netns: "open
/// /dev/net/tun: permission denied"). Giving every user the device is what
/// the distributions do: a user can only make tap devices in a network
/// namespace of their own with it.
fn open_tun_device(runner: &Runner, is_root: bool) -> Result<()> {
    let Ok(metadata) = fs::metadata(TUN_DEVICE) else {
        eprintln!("setup: {TUN_DEVICE}: absent; rootless podman will have no network in RUN steps");
        return Ok(());
    };
    let mode = metadata.permissions().mode() & 0o777;
    if open_to_everyone(mode) {
        eprintln!("setup: {TUN_DEVICE}: usable by rootless podman (mode {mode:o})");
        return Ok(());
    }
    if !is_root {
        eprintln!(
            "setup: {TUN_DEVICE} is mode {mode:o}: rootless podman's RUN steps need it; as root, \
             run once: chmod 0666 {TUN_DEVICE}"
        );
        return Ok(());
    }
    eprintln!("setup: {TUN_DEVICE}: mode {mode:o} -> 0666 (Debian's default), for rootless podman");
    runner.run(&Command::new("chmod").args(["0666", TUN_DEVICE]))
}

/// The architectures podman on this host can only run through qemu.
pub fn emulated_architectures(build_platform: Platform) -> Vec<Arch> {
    SUPPORTED
        .iter()
        .map(|platform| platform.arch)
        .filter(|&arch| arch != build_platform.arch)
        .collect()
}

/// True when the kernel will hand binaries of `arch` to qemu.
pub fn binfmt_registered(arch: Arch) -> bool {
    let entry = Path::new(BINFMT_DIR).join(format!("qemu-{}", arch.uname_machine()));
    fs::read_to_string(entry).is_ok_and(|text| text.starts_with("enabled"))
}

fn register_binfmt(runner: &Runner, is_root: bool) -> Result<()> {
    let host = host_platform()?;
    for arch in emulated_architectures(host) {
        let name = format!("qemu-{}", arch.uname_machine());
        if binfmt_registered(arch) {
            eprintln!("setup: binfmt: {name} is registered");
            continue;
        }
        let rule_file = PathBuf::from(format!("/usr/lib/binfmt.d/{name}.conf"));
        eprintln!(
            "setup: binfmt: registering {name} from {}",
            rule_file.display()
        );
        let register = Path::new(BINFMT_DIR).join("register");
        require_root(
            is_root,
            "register qemu with binfmt_misc",
            &format!(
                "    mountpoint -q {BINFMT_DIR} || mount -t binfmt_misc binfmt_misc {BINFMT_DIR}\n    cat {} > {}",
                rule_file.display(),
                register.display()
            ),
        )?;
        if !register.exists() {
            runner.run(&Command::new("mount").args([
                "-t",
                "binfmt_misc",
                "binfmt_misc",
                BINFMT_DIR,
            ]))?;
            // Registered already, where the mount was only missing (in a
            // container: the registration is the kernel's, not the
            // container's): writing it again fails with "File exists".
            if binfmt_registered(arch) {
                eprintln!("setup: binfmt: {name} is registered");
                continue;
            }
        }
        runner.execute(vec![Step::work(
            format!("cat {} > {}", rule_file.display(), register.display()),
            |_, _| {
                let rule = fs::read_to_string(&rule_file).with_context(|| {
                    format!(
                        "cannot read {}; is qemu-user-static installed?",
                        rule_file.display()
                    )
                })?;
                fs::write(&register, rule.trim_end()).with_context(|| {
                    format!(
                        "cannot register {name} with binfmt_misc ({})",
                        register.display()
                    )
                })?;
                if !binfmt_registered(arch) {
                    bail!(
                        "{name} was written to {} but is not enabled",
                        register.display()
                    );
                }
                Ok(())
            },
        )])?;
    }
    Ok(())
}

/// The machine's own platform (setup runs before podman can be asked).
fn host_platform() -> Result<Platform> {
    let arch = Arch::from_any_name(std::env::consts::ARCH).with_context(|| {
        format!(
            "this machine's architecture {} is not supported",
            std::env::consts::ARCH
        )
    })?;
    Ok(Platform::linux(arch))
}

pub fn install_cargo_make(runner: &Runner) -> Result<()> {
    if which::which("cargo-make").is_ok() {
        eprintln!("setup: cargo-make: present");
        return Ok(());
    }
    eprintln!("setup: cargo-make: installing from crates.io (takes a few minutes)");
    runner
        .run(&Command::new("cargo").args(["install", "cargo-make", "--locked"]))
        .context("cannot install cargo-make")
}

/// podman answers and can build manifest lists (after the installs: a
/// step of the plan).
fn check_podman(runner: &Runner) -> Result<()> {
    runner.execute(vec![Step::work(
        "podman answers `podman info` and builds manifest lists",
        |runner, _| podman_works(runner),
    )])
}

fn podman_works(runner: &Runner) -> Result<()> {
    let engine = crate::engine::Engine::read(runner)
        .context("podman is installed but `podman info` fails")?;
    if !engine.builds_manifest_lists() {
        bail!(
            "podman {} is too old; the pipeline needs podman >= {}",
            engine.version,
            crate::engine::MINIMUM_VERSION
        );
    }
    eprintln!(
        "setup: podman {} works ({}, {} storage)",
        engine.version,
        if engine.rootless {
            "rootless"
        } else {
            "as root"
        },
        engine.storage_driver
    );
    if engine.copies_every_layer() {
        eprintln!(
            "setup: WARNING: podman's storage uses the vfs driver, a full copy of every layer \
             (about 100 times the disk of overlay). With containers-storage installed (setup \
             installs it), `podman system reset` switches it to overlay; it deletes this \
             user's images. Builds refuse vfs unless --force."
        );
    }
    Ok(())
}

impl crate::flags::Setup {
    pub fn run(self) -> Result<()> {
        run(&Runner::of(&self), !self.no_cargo_make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW_LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units\n\
        Max processes             96365                96365                processes\n\
        Max open files            20000                20000                files\n";
    const HIGH_LIMITS: &str =
        "Max processes             unlimited            unlimited            processes\n\
        Max open files            1048576              1048576              files\n";

    #[test]
    fn hard_limits_are_read_from_proc_limits() {
        assert_eq!(hard_limit(LOW_LIMITS, "Max open files"), Some(20000));
        assert_eq!(hard_limit(LOW_LIMITS, "Max processes"), Some(96365));
        assert_eq!(hard_limit(HIGH_LIMITS, "Max processes"), None);
    }

    #[test]
    fn low_limits_and_hybrid_cgroups_get_runc_and_lower_ulimits() {
        let hybrid = std::env::temp_dir().join(format!("rc-cgroup-hybrid-{}", std::process::id()));
        fs::create_dir_all(&hybrid).unwrap();
        let conf = wanted_containers_conf(&hybrid, LOW_LIMITS).unwrap();
        assert!(conf.starts_with(MANAGED_MARKER));
        assert!(conf.contains("runtime = \"runc\""));
        assert!(
            conf.contains("default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]"),
            "{conf}"
        );
        fs::remove_dir_all(hybrid).unwrap();
    }

    #[test]
    fn a_pure_cgroup_v2_machine_with_high_limits_needs_nothing() {
        let unified = std::env::temp_dir().join(format!("rc-cgroup-v2-{}", std::process::id()));
        fs::create_dir_all(&unified).unwrap();
        fs::write(unified.join("cgroup.controllers"), "cpu memory").unwrap();
        assert_eq!(wanted_containers_conf(&unified, HIGH_LIMITS), None);
        fs::remove_dir_all(unified).unwrap();
    }

    #[test]
    fn the_tun_device_must_be_open_to_every_user() {
        assert!(open_to_everyone(0o666));
        assert!(open_to_everyone(0o777));
        assert!(!open_to_everyone(0o600));
        assert!(!open_to_everyone(0o660));
    }

    #[test]
    fn only_foreign_architectures_need_emulation() {
        assert_eq!(
            emulated_architectures(Platform::LINUX_AMD64),
            vec![Arch::Arm64]
        );
        assert_eq!(
            emulated_architectures(Platform::LINUX_ARM64),
            vec![Arch::Amd64]
        );
    }
}
