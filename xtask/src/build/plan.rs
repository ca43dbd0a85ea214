//! The build plan: every podman invocation of a build, computed from what
//! was read (the release, the machine, the engine) before anything runs.
//! [`plan`] spawns nothing; tests assert on its commands.

use std::path::PathBuf;

use crate::{
    engine::podman::{self, BuildArg},
    exec::Command,
    platform::Platform,
    release::{
        declared::{self, StagePlatform},
        git::SourceState,
        reference::Repository,
        tags::Tags,
    },
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
    pub repository: Repository,
    pub tags: Tags,
    pub build_args: Vec<BuildArg>,
    pub strict: bool,
    pub latest_on_partial: bool,
    /// OCI labels (and annotations) for every image.
    pub labels: crate::release::labels::Labels,
    /// The declared base images, as build arguments (before the user's).
    pub base_images: Vec<BuildArg>,
    /// The declared recipe's stages, built in order before the image (none:
    /// a plain recipe); see [`Stage`].
    pub stages: Vec<declared::Stage>,
    /// The build argument that gets the architectures a build makes
    /// (`"amd64 arm64"`), in the stages for the build platform, else in the
    /// image's own build.
    pub targets_arg: Option<String>,
    pub no_cache: bool,
    /// The registry layer cache every build (stages too) reads and writes.
    pub cache: Option<podman::LayerCache>,
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
    /// Directory for this run's files (the list ID podman writes).
    pub scratch: PathBuf,
    /// The engine writes the list's ID to `--iidfile` (see
    /// `Engine::writes_list_id_file`); else no ID is asked for.
    pub list_id_from_build: bool,
}

/// A build that runs before the image's own, into a list of its own that
/// the later builds name in a build argument; removed when the run ends.
///
/// A staged recipe names its stages in Cargo metadata. rc-web's is built in
/// three steps: its `dependencies` stage for the build platform only (it
/// compiles for every target), its `library` stage for the target platforms
/// (`DEPENDENCIES_IMAGE` = the first), both dated [`STAGE_TIMESTAMP`], and
/// then the image itself (`DEPENDENCIES_IMAGE`, `LIBRARY_IMAGE` = the
/// second), dated by the commit.
/// podman's `--timestamp` dates every layer one build makes, so only this way
/// does the library's layer stay the same from one release to the next when
/// the dependencies do, also where nothing is cached (a fresh CI runner): the
/// registry already has it, and the release uploads the binary's layer only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The Containerfile stage (`--target`) it builds.
    pub target: String,
    pub list: String,
    pub command: Command,
}

/// The date of the layers a [`Stage`] makes: a constant, as ko and Jib date
/// theirs, so that equal content gives equal layers.
pub const STAGE_TIMESTAMP: i64 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformBuild {
    /// `Some` for a single-platform build (its output is prefixed), `None` for all at once.
    pub platform: Option<Platform>,
    /// Built first, in order (a staged Containerfile's first two steps).
    pub stages: Vec<Stage>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub platforms: Vec<Platform>,
    pub mode: Mode,
    pub repository: Repository,
    pub temporary_list: String,
    /// Where the all-at-once build writes the list's image ID.
    pub list_id_file: PathBuf,
    /// Whether a build that goes as planned tells the list's image ID (the
    /// all-at-once build, on an engine that writes it).
    pub list_id_expected: bool,
    /// The first build attempt: one command all at once, or one per platform.
    pub builds: Vec<PlatformBuild>,
    /// Each platform alone: the fallback when the all-at-once build fails, and
    /// the repair when it leaves a platform out of the list (a podman 4.3 bug).
    pub single_platform_builds: Vec<PlatformBuild>,
    pub tags: Tags,
    pub strict: bool,
    pub latest_on_partial: bool,
    /// A label every image the plan builds carries (the revision's): how
    /// its entries' images are found in local storage.
    pub entry_label: Option<(String, String)>,
}

/// Computes every podman build invocation; spawns nothing.
pub fn plan(request: &Request, environment: &Environment) -> Plan {
    let planner = Planner::new(request, environment);
    let single_platform_builds: Vec<PlatformBuild> = request
        .platforms
        .iter()
        .map(|&platform| PlatformBuild {
            platform: Some(platform),
            ..planner.build_for(vec![platform], false)
        })
        .collect();
    let builds = match request.mode {
        Mode::AllAtOnce => vec![planner.build_for(request.platforms.clone(), true)],
        Mode::PerPlatform => single_platform_builds.clone(),
    };
    Plan {
        platforms: request.platforms.clone(),
        mode: request.mode,
        repository: request.repository.clone(),
        temporary_list: planner.temporary_list,
        list_id_file: planner.list_id_file,
        list_id_expected: request.mode == Mode::AllAtOnce && environment.list_id_from_build,
        builds,
        single_platform_builds,
        tags: request.tags.clone(),
        strict: request.strict,
        latest_on_partial: request.latest_on_partial,
        entry_label: crate::release::labels::revision(&request.labels)
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
    }
}

/// What every build of one plan shares.
struct Planner<'a> {
    request: &'a Request,
    environment: &'a Environment,
    temporary_list: String,
    list_id_file: PathBuf,
    volumes: Vec<String>,
}

fn arg(name: &str, value: String) -> BuildArg {
    BuildArg {
        name: name.into(),
        value,
    }
}

impl<'a> Planner<'a> {
    fn new(request: &'a Request, environment: &'a Environment) -> Planner<'a> {
        Planner {
            temporary_list: request
                .repository
                .with_tag(&format!("build-{}", environment.run_id)),
            list_id_file: environment
                .scratch
                .join(format!("build-{}.list-id", environment.run_id)),
            volumes: environment
                .ca_bundle
                .iter()
                .map(|path| format!("{0}:{0}:ro", path.display()))
                .collect(),
            request,
            environment,
        }
    }

    /// Ours first, the user's after: a user's value for one of ours wins.
    fn with_user_args(&self, ours: impl IntoIterator<Item = BuildArg>) -> Vec<BuildArg> {
        ours.into_iter()
            .chain(self.request.build_args.iter().cloned())
            .collect()
    }

    fn podman_build(&self, platforms: Vec<Platform>, manifest: String) -> podman::Build {
        podman::Build {
            containerfile: self.request.containerfile.clone(),
            context: self.request.context.clone(),
            ignorefile: None,
            platforms,
            build_platform: self.environment.build_platform,
            manifest,
            target: None,
            build_args: Vec::new(),
            volumes: self.volumes.clone(),
            labels: Vec::new(),
            timestamp: Some(self.environment.source.commit_time),
            no_cache: self.request.no_cache,
            cache: self
                .request
                .cache
                .clone()
                .filter(|_| !self.request.no_cache),
            iid_file: None,
        }
    }

    /// The all-at-once build, or one platform alone (`platforms` is one),
    /// each preceded by its stages.
    fn build_for(&self, platforms: Vec<Platform>, all_at_once: bool) -> PlatformBuild {
        // The stages' lists: one set for the all-at-once build and one per
        // platform alone, so that a fallback never adds to the first's.
        let suffix: String = if all_at_once {
            String::new()
        } else {
            platforms
                .iter()
                .map(|platform| format!("-{}", platform.arch.oci_name()))
                .collect()
        };
        let targets = self.request.targets_arg.as_deref().map(|name| {
            arg(
                name,
                platforms
                    .iter()
                    .map(|platform| platform.arch.oci_name())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        });
        let (stages, stage_images) = self.stages(&platforms, &suffix, targets.as_ref());
        let compiled_in_a_stage = self
            .request
            .stages
            .iter()
            .any(|stage| stage.platform == StagePlatform::Build);
        let source = &self.environment.source;
        let ours = self
            .request
            .base_images
            .iter()
            .cloned()
            .chain(stage_images)
            .chain([
                arg("GIT_REVISION", source.revision()),
                arg("BUILD_DATE", source.commit_date()),
            ])
            .chain(targets.filter(|_| !compiled_in_a_stage));
        let mut build = self.podman_build(platforms, self.temporary_list.clone());
        build.build_args = self.with_user_args(ours);
        build.labels = self.request.labels.clone();
        build.iid_file =
            (all_at_once && self.environment.list_id_from_build).then(|| self.list_id_file.clone());
        PlatformBuild {
            platform: None,
            stages,
            command: build.command(),
        }
    }

    /// The declared stages for `platforms`, and the build arguments that
    /// name their lists (for the image's build).
    fn stages(
        &self,
        platforms: &[Platform],
        suffix: &str,
        targets: Option<&BuildArg>,
    ) -> (Vec<Stage>, Vec<BuildArg>) {
        let mut stage_images: Vec<BuildArg> = Vec::new();
        let mut stages = Vec::new();
        for stage in &self.request.stages {
            let list = format!("{}-{}{suffix}", self.temporary_list, stage.target);
            let on_build_platform = stage.platform == StagePlatform::Build;
            let mut build = self.podman_build(
                if on_build_platform {
                    vec![self.environment.build_platform]
                } else {
                    platforms.to_vec()
                },
                list.clone(),
            );
            build.target = Some(stage.target.clone());
            build.build_args = self.with_user_args(
                self.request
                    .base_images
                    .iter()
                    .chain(&stage_images)
                    .chain(targets.filter(|_| on_build_platform))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            build.timestamp = Some(STAGE_TIMESTAMP);
            build.ignorefile = stage.ignorefile.clone();
            stages.push(Stage {
                target: stage.target.clone(),
                list: list.clone(),
                command: build.command(),
            });
            stage_images.push(arg(&stage.image_arg, list));
        }
        (stages, stage_images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::tags;

    fn source(dirty: bool) -> SourceState {
        SourceState {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            short_commit: "0123456".into(),
            commit_time: 1_700_000_000,
            dirty,
            tags_on_head: vec!["v1.2.3".into()],
            all_tags: vec!["v1.2.3".into()],
            branch: Some("main".into()),
            shallow: false,
        }
    }

    fn request(mode: Mode) -> Request {
        Request {
            platforms: vec![Platform::LINUX_AMD64, Platform::LINUX_ARM64],
            mode,
            containerfile: "containers/rc-web/Containerfile".into(),
            context: ".".into(),
            repository: Repository::new("ghcr.io", "daksha-rc/rc-web").unwrap(),
            tags: tags::compute(&source(false), &tags::Choices::default()).unwrap(),
            build_args: vec!["FEATURE=on".parse().unwrap()],
            strict: false,
            latest_on_partial: false,
            labels: vec![("org.opencontainers.image.version".into(), "v1.2.3".into())],
            no_cache: false,
            cache: None,
            base_images: Vec::new(),
            stages: Vec::new(),
            targets_arg: Some("RUST_TARGETS".into()),
        }
    }

    /// rc-web's recipe, as its Cargo.toml declares it.
    fn rc_web_stages() -> Vec<declared::Stage> {
        let stage = |target: &str, platform, image_arg: &str| declared::Stage {
            target: target.into(),
            platform,
            image_arg: image_arg.into(),
            ignorefile: None,
        };
        vec![
            declared::Stage {
                ignorefile: Some("/w/containers/rc-web/dependencies.containerignore".into()),
                ..stage("dependencies", StagePlatform::Build, "DEPENDENCIES_IMAGE")
            },
            stage("library", StagePlatform::Target, "LIBRARY_IMAGE"),
        ]
    }

    fn environment(dirty: bool) -> Environment {
        Environment {
            build_platform: Platform::LINUX_AMD64,
            ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            source: source(dirty),
            run_id: "42".into(),
            scratch: PathBuf::from("/work/target/xtask"),
            list_id_from_build: true,
        }
    }

    #[test]
    fn all_at_once_is_one_build_for_every_platform() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        assert_eq!(plan.builds.len(), 1);
        assert_eq!(plan.temporary_list, "ghcr.io/daksha-rc/rc-web:build-42");
        let shown = plan.builds[0].command.to_string();
        assert!(
            shown.contains("| env -u SOURCE_DATE_EPOCH podman build --platform linux/amd64,linux/arm64 --manifest ghcr.io/daksha-rc/rc-web:build-42"),
            "{shown}"
        );
        assert!(
            shown.contains("--build-arg BUILDPLATFORM=linux/amd64"),
            "{shown}"
        );
        assert!(
            shown.contains("--build-arg GIT_REVISION=0123456789abcdef0123456789abcdef01234567 "),
            "{shown}"
        );
        assert!(
            shown.contains("--build-arg BUILD_DATE=2023-11-14T22:13:20Z"),
            "{shown}"
        );
        assert!(shown.contains("--build-arg FEATURE=on"), "{shown}");
        assert!(
            shown.contains("--build-arg 'RUST_TARGETS=amd64 arm64'"),
            "one compile stage for both: {shown}"
        );
        // The list's ID comes back in a file, for the push to start from.
        assert!(
            shown.ends_with(" --iidfile /work/target/xtask/build-42.list-id ."),
            "{shown}"
        );
    }

    #[test]
    fn the_fallback_builds_each_platform_alone_into_the_same_list() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let platforms: Vec<_> = plan
            .single_platform_builds
            .iter()
            .map(|build| build.platform)
            .collect();
        assert_eq!(
            platforms,
            vec![Some(Platform::LINUX_AMD64), Some(Platform::LINUX_ARM64)]
        );
        for build in &plan.single_platform_builds {
            let shown = build.command.to_string();
            let expected = format!(
                "--platform {} --manifest ghcr.io/daksha-rc/rc-web:build-42",
                build.platform.unwrap()
            );
            assert!(shown.contains(&expected), "{shown}");
            // Alone means alone: a failing arm64 compile cannot take amd64 down.
            let targets = format!(
                "--build-arg RUST_TARGETS={}",
                build.platform.unwrap().arch.oci_name()
            );
            assert!(shown.contains(&targets), "{shown}");
            // Added to an existing list: its ID is not this build's to tell.
            assert!(!shown.contains("--iidfile"), "{shown}");
        }
    }

    #[test]
    fn user_build_args_come_after_ours_so_they_win() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let args = &plan.builds[0].command.args;
        let ours = args
            .iter()
            .position(|arg| arg.starts_with("GIT_REVISION="))
            .unwrap();
        let theirs = args.iter().position(|arg| arg == "FEATURE=on").unwrap();
        assert!(ours < theirs);
    }

    #[test]
    fn the_registry_cache_reaches_every_build_and_stage_unless_no_cache() {
        let cache = podman::LayerCache {
            repository: "ghcr.io/daksha-rc/rc-web-cache".into(),
            destination: crate::engine::Destination {
                registry: "ghcr.io".into(),
                tls_verify: true,
                format: crate::flags::Format::Oci,
                authfile: None,
                skopeo_runtime_dir: None,
            },
        };
        let cached = Request {
            stages: rc_web_stages(),
            cache: Some(cache),
            ..request(Mode::AllAtOnce)
        };
        let plan = plan(&cached, &environment(false));
        let commands: Vec<String> = plan
            .builds
            .iter()
            .chain(&plan.single_platform_builds)
            .flat_map(|build| {
                build
                    .stages
                    .iter()
                    .map(|stage| &stage.command)
                    .chain([&build.command])
            })
            .map(ToString::to_string)
            .collect();
        assert_eq!(commands.len(), 9, "3 builds of 3 steps");
        for command in &commands {
            assert!(
                command.contains(
                    "--cache-from ghcr.io/daksha-rc/rc-web-cache --cache-to ghcr.io/daksha-rc/rc-web-cache"
                ),
                "{command}"
            );
        }
        let clean = plan_of(Request {
            no_cache: true,
            ..cached
        });
        assert!(!clean.contains("--cache-"), "{clean}");
    }

    fn plan_of(request: Request) -> String {
        plan(&request, &environment(false)).builds[0]
            .command
            .to_string()
    }

    #[test]
    fn a_staged_containerfile_builds_dependencies_then_library_then_the_image() {
        let staged = Request {
            stages: rc_web_stages(),
            ..request(Mode::AllAtOnce)
        };
        let plan = plan(&staged, &environment(false));
        let all = &plan.builds[0];
        let lists: Vec<&str> = all.stages.iter().map(|stage| stage.list.as_str()).collect();
        assert_eq!(
            lists,
            [
                "ghcr.io/daksha-rc/rc-web:build-42-dependencies",
                "ghcr.io/daksha-rc/rc-web:build-42-library"
            ]
        );
        let [dependencies, library] = [0, 1].map(|i| all.stages[i].command.to_string());
        let image = all.command.to_string();
        // The dependencies once, on the build platform, for every target.
        assert!(
            dependencies.starts_with(
                "env -u SOURCE_DATE_EPOCH podman build --platform linux/amd64 --manifest \
                 ghcr.io/daksha-rc/rc-web:build-42-dependencies --target dependencies "
            ),
            "{dependencies}"
        );
        assert!(
            dependencies.contains("--build-arg 'RUST_TARGETS=amd64 arm64'"),
            "{dependencies}"
        );
        // Only the stage that declares an ignore file reads its context through it.
        assert!(
            dependencies
                .contains(" --ignorefile /w/containers/rc-web/dependencies.containerignore "),
            "{dependencies}"
        );
        // The library for every target platform, from those dependencies.
        assert!(
            library.starts_with(
                "env -u SOURCE_DATE_EPOCH podman build --platform linux/amd64,linux/arm64 --manifest \
                 ghcr.io/daksha-rc/rc-web:build-42-library --target library "
            ),
            "{library}"
        );
        assert!(
            library.contains(
                "--build-arg DEPENDENCIES_IMAGE=ghcr.io/daksha-rc/rc-web:build-42-dependencies "
            ),
            "{library}"
        );
        for other in [&library, &image] {
            assert!(!other.contains("--ignorefile"), "{other}");
        }
        // Both dated by the constant; the image by the commit, with the labels.
        for stage in [&dependencies, &library] {
            assert!(stage.contains("--timestamp 0 "), "{stage}");
            assert!(
                !stage.contains("LABEL") && !stage.contains("--label"),
                "{stage}"
            );
            assert!(!stage.contains("--iidfile"), "{stage}");
            assert!(stage.contains("--build-arg FEATURE=on"), "{stage}");
        }
        assert!(image.contains("--timestamp 1700000000 "), "{image}");
        assert!(
            image.starts_with(
                r#"printf '%s' 'LABEL "org.opencontainers.image.version"="v1.2.3"' | env -u SOURCE_DATE_EPOCH podman build "#
            ),
            "{image}"
        );
        assert!(
            image.contains(
                "--build-arg DEPENDENCIES_IMAGE=ghcr.io/daksha-rc/rc-web:build-42-dependencies \
                 --build-arg LIBRARY_IMAGE=ghcr.io/daksha-rc/rc-web:build-42-library "
            ),
            "{image}"
        );
        assert!(!image.contains("--target"), "{image}");
        assert!(!image.contains("RUST_TARGETS"), "{image}");
        assert!(image.contains(" --iidfile "), "{image}");
        // Alone, a platform has its own stages, named after it: a fallback
        // never adds to the first attempt's lists.
        for build in &plan.single_platform_builds {
            let platform = build.platform.unwrap();
            let arch = platform.arch.oci_name();
            let [dependencies, library] = [0, 1].map(|i| build.stages[i].command.to_string());
            assert!(
                dependencies.starts_with(&format!(
                    "env -u SOURCE_DATE_EPOCH podman build --platform linux/amd64 --manifest \
                     ghcr.io/daksha-rc/rc-web:build-42-dependencies-{arch} "
                )),
                "{dependencies}"
            );
            assert!(
                dependencies.contains(&format!("--build-arg RUST_TARGETS={arch} ")),
                "{dependencies}"
            );
            assert!(
                library.starts_with(&format!(
                    "env -u SOURCE_DATE_EPOCH podman build --platform {platform} --manifest \
                     ghcr.io/daksha-rc/rc-web:build-42-library-{arch} "
                )),
                "{library}"
            );
            assert!(
                build.command.to_string().contains(&format!(
                    "--build-arg LIBRARY_IMAGE=ghcr.io/daksha-rc/rc-web:build-42-library-{arch} "
                )),
                "{}",
                build.command
            );
        }
        // An unstaged Containerfile has one build and no stages.
        let unstaged = super::plan(&request(Mode::AllAtOnce), &environment(false));
        assert!(unstaged.builds[0].stages.is_empty());
    }

    #[test]
    fn the_list_id_is_asked_for_only_where_the_engine_writes_it() {
        let mut remote = environment(false);
        remote.list_id_from_build = false;
        let plan = plan(&request(Mode::AllAtOnce), &remote);
        assert!(!plan.builds[0]
            .command
            .args
            .contains(&"--iidfile".to_owned()));
    }

    #[test]
    fn per_platform_mode_starts_with_the_single_platform_builds() {
        let plan = plan(&request(Mode::PerPlatform), &environment(false));
        assert_eq!(plan.builds, plan.single_platform_builds);
    }

    #[test]
    fn dirty_work_trees_are_marked_in_the_revision() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(true));
        let revision = "GIT_REVISION=0123456789abcdef0123456789abcdef01234567-dirty".to_owned();
        assert!(plan.builds[0].command.args.contains(&revision));
    }

    #[test]
    fn the_ca_bundle_is_mounted_read_only_when_present() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let mount =
            "--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro";
        assert!(plan.builds[0].command.to_string().contains(mount));
        let mut without = environment(false);
        without.ca_bundle = None;
        let plan = super::plan(&request(Mode::AllAtOnce), &without);
        assert!(!plan.builds[0].command.args.contains(&"--volume".to_owned()));
    }

    #[test]
    fn a_partial_outcome_holds_latest_back() {
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let partial = crate::build::Outcome {
            built: vec![Platform::LINUX_AMD64],
            failed: vec![Platform::LINUX_ARM64],
            ..crate::build::Outcome::default()
        };
        assert!(partial.is_partial());
        assert_eq!(
            plan.tags.for_result(false, plan.latest_on_partial),
            ["v1.2.3", "0123456"]
        );
        assert_eq!(
            plan.tags.for_result(true, false),
            ["v1.2.3", "0123456", "latest"]
        );
    }
}
