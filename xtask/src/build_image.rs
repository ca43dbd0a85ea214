//! `build-image`: plan the podman invocations, run them, verify the result,
//! and only then give the manifest list its real name.
//!
//! Builds go into a temporary list. The list the user sees is replaced only
//! after the temporary one holds exactly the requested platforms, each image
//! built for the platform its entry claims; a failed build leaves the previous
//! list as it was, and a rerun never accumulates entries.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{
    base_images,
    exec::{Command, Runner},
    git::SourceState,
    platform::{self, Platform},
    podman::{self, BuildArg},
    project, setup,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `podman build --platform a,b --manifest` for every platform.
    AllAtOnce,
    /// One `podman build` per platform, one after the other.
    PerPlatform,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub platforms: Vec<Platform>,
    pub mode: Mode,
    pub containerfile: PathBuf,
    pub context: PathBuf,
    /// Repository without tag, e.g. `localhost/rc-web`.
    pub image: String,
    pub tag: String,
    pub build_args: Vec<BuildArg>,
}

/// Facts about this machine and source tree that the plan depends on.
#[derive(Debug, Clone)]
pub struct Environment {
    pub build_platform: Platform,
    /// The host's CA bundle, mounted into RUN steps so HTTPS (cargo's downloads)
    /// works behind TLS-inspecting proxies. `None` where podman runs in a VM.
    pub ca_bundle: Option<PathBuf>,
    pub source: SourceState,
    /// Makes the temporary list name unique to this run.
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformBuild {
    /// `Some` for a single-platform build (its output is prefixed), `None` for all at once.
    pub platform: Option<Platform>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub platforms: Vec<Platform>,
    pub temporary_list: String,
    pub final_list: String,
    pub builds: Vec<PlatformBuild>,
    /// How to build one platform alone into the temporary list: used when the
    /// all-at-once build leaves a platform out of the list (a podman 4.3 bug).
    pub single_platform_builds: Vec<PlatformBuild>,
}

/// Computes every podman build invocation; spawns nothing.
pub fn plan(request: &Request, environment: &Environment) -> Plan {
    let temporary_list = format!("{}:build-{}", request.image, environment.run_id);
    let build_for = |platforms: Vec<Platform>| {
        let mut build_args = vec![
            BuildArg { name: "GIT_REVISION".into(), value: revision_label(&environment.source) },
            BuildArg { name: "BUILD_DATE".into(), value: environment.source.commit_date() },
        ];
        build_args.extend(request.build_args.iter().cloned());
        podman::Build {
            containerfile: request.containerfile.clone(),
            context: request.context.clone(),
            platforms,
            build_platform: environment.build_platform,
            manifest: temporary_list.clone(),
            build_args,
            volumes: environment
                .ca_bundle
                .iter()
                .map(|path| format!("{0}:{0}:ro", path.display()))
                .collect(),
        }
        .command()
    };
    let single_platform_builds: Vec<PlatformBuild> = request
        .platforms
        .iter()
        .map(|&platform| PlatformBuild { platform: Some(platform), command: build_for(vec![platform]) })
        .collect();
    let builds = match request.mode {
        Mode::AllAtOnce => vec![PlatformBuild { platform: None, command: build_for(request.platforms.clone()) }],
        Mode::PerPlatform => single_platform_builds.clone(),
    };
    Plan {
        platforms: request.platforms.clone(),
        final_list: format!("{}:{}", request.image, request.tag),
        temporary_list,
        builds,
        single_platform_builds,
    }
}

/// The commit the image is built from, marked when the work tree had changes.
fn revision_label(source: &SourceState) -> String {
    if source.dirty {
        format!("{}-dirty", source.commit)
    } else {
        source.commit.clone()
    }
}

fn prefix(platform: Option<Platform>) -> String {
    platform.map(|platform| format!("[{platform}] ")).unwrap_or_default()
}

/// Runs the plan. On failure the temporary list is removed and the final
/// list is left as it was.
pub fn execute(plan: &Plan, runner: &Runner) -> Result<()> {
    let result = build_and_verify(plan, runner);
    if result.is_err() && !runner.dry_run {
        remove_list_if_present(runner, &plan.temporary_list);
    }
    result?;
    publish(plan, runner)
}

fn build_and_verify(plan: &Plan, runner: &Runner) -> Result<()> {
    for build in &plan.builds {
        runner
            .run_prefixed(&build.command, &prefix(build.platform))
            .with_context(|| format!("cannot build {}", platform::join(&plan.platforms)))?;
    }
    if runner.dry_run {
        return Ok(());
    }
    let list = read_list(runner, &plan.temporary_list)?;
    for build in &plan.single_platform_builds {
        let platform = build.platform.expect("single-platform builds name their platform");
        if list.entries_for(platform).is_empty() {
            eprintln!(
                "build-image: warning: podman left {platform} out of the list although the build \
                 succeeded (a known podman 4.3 issue); building {platform} alone, from cache"
            );
            runner
                .run_prefixed(&build.command, &prefix(build.platform))
                .with_context(|| format!("cannot build {platform}"))?;
        }
    }
    verify(runner, &plan.temporary_list, &plan.platforms)
}

fn read_list(runner: &Runner, name: &str) -> Result<podman::ManifestList> {
    let json = runner.read(&podman::manifest_inspect(name))?;
    podman::ManifestList::parse(&json)
}

/// The list must hold exactly one entry per expected platform and nothing
/// else, and each entry's image must really be built for its platform.
pub fn verify(runner: &Runner, list_name: &str, expected: &[Platform]) -> Result<()> {
    let list = read_list(runner, list_name)?;
    let mut problems = Vec::new();
    for &platform in expected {
        let entries = list.entries_for(platform);
        match entries.as_slice() {
            [] => problems.push(format!("no entry for {platform}")),
            [entry] => {
                let reference = format!("{list_name}@{}", entry.digest);
                let config = podman::ImageConfig::parse(&runner.read(&podman::image_inspect(&reference))?)?;
                let actual = format!("{}/{}", config.os, config.architecture);
                if actual != platform.to_string() {
                    problems.push(format!("the {platform} entry is an image built for {actual}"));
                }
            }
            several => problems.push(format!("{} entries for {platform}", several.len())),
        }
    }
    for entry in &list.manifests {
        let platform = entry.platform_string().unwrap_or_else(|| "no platform".into());
        if !expected.iter().any(|expected| expected.to_string() == platform) {
            problems.push(format!("unexpected entry {} ({platform})", entry.digest));
        }
    }
    if !problems.is_empty() {
        bail!("manifest list {list_name} is wrong: {}", problems.join("; "));
    }
    Ok(())
}

fn publish(plan: &Plan, runner: &Runner) -> Result<()> {
    let final_exists = !runner.dry_run && runner.succeeds(&podman::manifest_exists(&plan.final_list))?;
    if final_exists {
        runner.run(&podman::manifest_remove(&plan.final_list))?;
    }
    runner.run(&podman::tag(&plan.temporary_list, &plan.final_list))?;
    // Drops only the temporary name: the list now also has its final name.
    runner.run(&podman::manifest_remove(&plan.temporary_list))
}

fn remove_list_if_present(runner: &Runner, name: &str) {
    if runner.succeeds(&podman::manifest_exists(name)).unwrap_or(false) {
        if let Err(error) = runner.run(&podman::manifest_remove(name)) {
            eprintln!("build-image: warning: cannot remove temporary list {name}: {error:#}");
        }
    }
}

impl crate::flags::BuildImage {
    pub fn run(self) -> Result<()> {
        let runner = Runner::new(self.dry_run);
        let root = project::root();
        let containerfile = root.join(&self.containerfile);
        let context = root.join(&self.context);
        check_inputs(&containerfile, &context)?;
        prepare_machine(&runner, &self.platforms)?;
        let info = podman::Info::parse(&runner.read(&podman::info())?)?;
        let build_platform = info.build_platform()?;
        if uses_project_base_images(&containerfile, &self.build_args) {
            base_images::ensure(&runner, build_platform, false)?;
        }
        let request = Request {
            platforms: self.platforms,
            mode: if self.per_platform { Mode::PerPlatform } else { Mode::AllAtOnce },
            containerfile,
            context,
            image: self.image,
            tag: self.tag,
            build_args: self.build_args,
        };
        let environment = Environment {
            build_platform,
            ca_bundle: host_ca_bundle(),
            source: SourceState::read(&root)?,
            run_id: std::process::id().to_string(),
        };
        let plan = plan(&request, &environment);
        execute(&plan, &runner)?;
        if !runner.dry_run {
            eprintln!(
                "build-image: built {} for {}",
                plan.final_list,
                platform::join(&plan.platforms)
            );
        }
        Ok(())
    }
}

fn check_inputs(containerfile: &Path, context: &Path) -> Result<()> {
    let mut problems = Vec::new();
    if !containerfile.is_file() {
        problems.push(format!("Containerfile {} does not exist; pass --file PATH", containerfile.display()));
    }
    if !context.is_dir() {
        problems.push(format!("build context {} is not a directory; pass --context DIR", context.display()));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// Runs setup when something the build needs is missing from this machine.
fn prepare_machine(runner: &Runner, platforms: &[Platform]) -> Result<()> {
    let mut missing: Vec<String> = ["podman", "mmdebstrap"]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .map(str::to_owned)
        .collect();
    if std::env::consts::OS == "linux" && which::which("podman").is_ok() {
        let info = podman::Info::parse(&runner.read(&podman::info())?)?;
        let build_platform = info.build_platform()?;
        for arch in setup::emulated_architectures(build_platform) {
            if platforms.iter().any(|platform| platform.arch == arch) && !setup::binfmt_registered(arch) {
                missing.push(format!("qemu binfmt registration for {}", arch.oci_name()));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("build-image: missing {}; running setup first", missing.join(", "));
    setup::run(runner, false).context("setup failed, so the build cannot start")
}

/// True unless the build uses another Containerfile or overrides both base images.
fn uses_project_base_images(containerfile: &Path, build_args: &[BuildArg]) -> bool {
    let overrides = |name: &str| build_args.iter().any(|build_arg| build_arg.name == name);
    containerfile == project::root().join(project::RC_WEB_CONTAINERFILE)
        && !(overrides("BUILDER_IMAGE") && overrides("RUNTIME_IMAGE"))
}

/// The host CA bundle, when podman runs on this host (not in a VM).
fn host_ca_bundle() -> Option<PathBuf> {
    let bundle = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    (std::env::consts::OS == "linux" && bundle.is_file()).then_some(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: Mode) -> Request {
        Request {
            platforms: vec![Platform::LINUX_AMD64, Platform::LINUX_ARM64],
            mode,
            containerfile: "containers/rc-web/Containerfile".into(),
            context: ".".into(),
            image: "localhost/rc-web".into(),
            tag: "latest".into(),
            build_args: vec!["FEATURE=on".parse().unwrap()],
        }
    }

    fn environment(dirty: bool) -> Environment {
        Environment {
            build_platform: Platform::LINUX_AMD64,
            ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            source: SourceState {
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                short_commit: "0123456".into(),
                commit_time: 1_700_000_000,
                dirty,
            },
            run_id: "42".into(),
        }
    }

    #[test]
    fn all_at_once_is_one_build_for_every_platform() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        assert_eq!(plan.builds.len(), 1);
        assert_eq!(plan.temporary_list, "localhost/rc-web:build-42");
        assert_eq!(plan.final_list, "localhost/rc-web:latest");
        let shown = plan.builds[0].command.to_string();
        assert!(shown.starts_with("podman build --platform linux/amd64,linux/arm64 --manifest localhost/rc-web:build-42"), "{shown}");
        assert!(shown.contains("--build-arg BUILDPLATFORM=linux/amd64"), "{shown}");
        assert!(shown.contains("--build-arg GIT_REVISION=0123456789abcdef0123456789abcdef01234567 "), "{shown}");
        assert!(shown.contains("--build-arg BUILD_DATE=2023-11-14T22:13:20Z"), "{shown}");
        assert!(shown.contains("--build-arg FEATURE=on"), "{shown}");
        assert!(shown.ends_with(" ."), "{shown}");
    }

    #[test]
    fn user_build_args_come_after_ours_so_they_win() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let args = &plan.builds[0].command.args;
        let ours = args.iter().position(|arg| arg.starts_with("GIT_REVISION=")).unwrap();
        let theirs = args.iter().position(|arg| arg == "FEATURE=on").unwrap();
        assert!(ours < theirs);
    }

    #[test]
    fn per_platform_builds_each_platform_alone_into_the_same_list() {
        let plan = plan(&request(Mode::PerPlatform), &environment(false));
        let platforms: Vec<_> = plan.builds.iter().map(|build| build.platform).collect();
        assert_eq!(platforms, vec![Some(Platform::LINUX_AMD64), Some(Platform::LINUX_ARM64)]);
        for build in &plan.builds {
            let shown = build.command.to_string();
            assert!(shown.contains(&format!("--platform {} --manifest localhost/rc-web:build-42", build.platform.unwrap())), "{shown}");
        }
        assert_eq!(plan.builds, plan.single_platform_builds);
    }

    #[test]
    fn dirty_work_trees_are_marked_in_the_revision() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(true));
        assert!(plan.builds[0].command.args.contains(&"GIT_REVISION=0123456789abcdef0123456789abcdef01234567-dirty".to_owned()));
    }

    #[test]
    fn the_ca_bundle_is_mounted_read_only_when_present() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        assert!(plan.builds[0].command.to_string().contains(
            "--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
        ));
        let mut without = environment(false);
        without.ca_bundle = None;
        let plan = super::plan(&request(Mode::AllAtOnce), &without);
        assert!(!plan.builds[0].command.args.contains(&"--volume".to_owned()));
    }
}
