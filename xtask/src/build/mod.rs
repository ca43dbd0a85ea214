//! `build-image`: plan the podman invocations, run them, fall back to one
//! platform at a time when the all-at-once build fails, verify the result, and
//! only then give the manifest list its tags.
//!
//! Builds go into a temporary list. The lists the user sees are replaced only
//! after the temporary one holds exactly the platforms that built, each image
//! built for the platform its entry claims; a failed build leaves the previous
//! lists as they were, and a rerun never accumulates entries.

mod execute;
pub mod machine;
mod plan;

pub use execute::{execute_alongside, print_summary, Alongside, Outcome};
pub use plan::{plan, Environment, Mode, Plan, Request};

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{
    base_images, disk,
    engine::Destination,
    engine::{
        podman::{BuildArg, LayerCache},
        Engine,
    },
    exec::Runner,
    flags, project, registry,
    release::{self, labels, Release},
};

/// Everything `build-image` needs before it spawns a build, checked up front:
/// inputs, names, tags, machine, disk, base images.
pub struct Prepared {
    pub plan: Plan,
    pub release: Release,
    /// The wall time of each preparation phase (for the summary).
    pub phases: Vec<(String, Duration)>,
}

/// A dry run's stand-in for the image ID a real build reads from `--iidfile`.
pub const DRY_RUN_LIST_ID: &str = "<image ID of the built list>";

/// What the build flags change in the declared image.
pub fn overrides(build: &flags::BuildFlags) -> release::Overrides<'_> {
    release::Overrides {
        platforms: build.platforms.as_deref(),
        containerfile: build.containerfile.as_deref(),
        context: build.context.as_deref(),
        cache_repo: build.cache_repo.as_deref(),
    }
}

/// The user's `--build-arg`s, parsed; each bad one is a problem.
pub fn parse_build_args(texts: &[String], problems: &mut Vec<String>) -> Vec<BuildArg> {
    texts
        .iter()
        .filter_map(|text| {
            text.parse::<BuildArg>()
                .map_err(|error| problems.push(format!("--build-arg {text:?}: {error:#}")))
                .ok()
        })
        .collect()
}

/// `logins`: the registries a push command logged in to (their private
/// auth file and TLS setting serve a registry cache in one of them).
pub fn prepare(
    image: &flags::ImageFlags,
    build: &flags::BuildFlags,
    runner: &Runner,
    logins: &[&Destination],
) -> Result<Prepared> {
    let mut problems = Vec::new();
    let build_args = parse_build_args(&build.build_args, &mut problems);
    let release = Release::read(runner, image, overrides(build), problems)?;
    let declared = &release.declared;
    let platforms = declared.platforms.clone();
    let mut phases = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, phases: &mut Vec<(String, Duration)>| {
        phases.push((name.to_owned(), clock.elapsed()));
        clock = Instant::now();
    };
    let engine = machine::prepare_machine(runner, &platforms, !build.no_setup, build.force)?;
    lap("setup", &mut phases);
    disk::check_before_build(
        runner,
        engine,
        disk::BuildKind::for_build(&platforms, build.clean),
        build.force,
    )?;
    lap("disk check", &mut phases);
    // The declared base images the user did not replace with a build
    // argument of their own; the project's are made (or found up to date).
    let base_images: Vec<BuildArg> = declared
        .base_images
        .iter()
        .filter(|base| !build_args.iter().any(|arg| arg.name == base.name))
        .cloned()
        .collect();
    let cache = layer_cache(&release, build, logins, engine);
    // Only those the build names (declared, or given with --build-arg): a
    // build on the runtime base alone neither waits for the Rust builder
    // nor (on a fresh storage) loads it.
    let needed = base_images::Needed::named(
        base_images
            .iter()
            .chain(&build_args)
            .map(|base| base.value.as_str()),
    )?;
    if needed != base_images::Needed::NONE {
        let store = cache.as_ref().map(base_images::Store::of_cache);
        base_images::ensure_only(runner, engine.build_platform, needed, false, store.as_ref())?;
        lap("base images", &mut phases);
    }
    let request = Request {
        platforms,
        base_images,
        build_args,
        cache,
        ..request(&release, image, build)
    };
    let scratch = project::scratch_dir();
    runner.if_real(|| {
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))
    })?;
    let environment = Environment {
        build_platform: engine.build_platform,
        ca_bundle: engine.host_ca_bundle(),
        source: release.source.clone(),
        run_id: std::process::id().to_string(),
        scratch,
        list_id_from_build: engine.writes_list_id_file(),
    };
    Ok(Prepared {
        plan: plan(&request, &environment),
        release,
        phases,
    })
}

/// What to build, as the release declares it and the flags ask; the
/// platforms, base images, build arguments and cache are the caller's.
fn request(release: &Release, image: &flags::ImageFlags, build: &flags::BuildFlags) -> Request {
    let declared = &release.declared;
    Request {
        platforms: Vec::new(),
        mode: if build.per_platform {
            Mode::PerPlatform
        } else {
            Mode::AllAtOnce
        },
        containerfile: declared.containerfile.clone(),
        context: declared.context.clone(),
        repository: release.repository().clone(),
        tags: release.tags.clone(),
        base_images: Vec::new(),
        build_args: Vec::new(),
        strict: build.strict,
        latest_on_partial: image.latest_on_partial,
        labels: labels::labels(&declared.package, &release.source, release.tags.primary()),
        no_cache: build.no_cache,
        cache: None,
        stages: declared.stages.clone(),
        targets_arg: declared.targets_arg.clone(),
    }
}

/// The registry layer cache of this run: the declared or given repository,
/// with the push's login when it is in a registry the run pushes to (else
/// podman's own). `None` without one, with `--no-cache`, or when its
/// registry does not answer (said, and the build goes on without it).
fn layer_cache(
    release: &Release,
    build: &flags::BuildFlags,
    logins: &[&Destination],
    engine: &Engine,
) -> Option<LayerCache> {
    let repository = release.cache_repository()?;
    if build.no_cache {
        eprintln!(
            "build-image: --no-cache: the registry cache {} is neither read nor written",
            repository.name()
        );
        return None;
    }
    let login = logins
        .iter()
        .find(|login| login.registry == repository.registry);
    let tls_verify = login.map_or(build.cache_tls_verify, |login| login.tls_verify);
    // A read the plan depends on: a dry run asks too.
    if let Err(error) = registry::check_reachable(&repository.registry, tls_verify) {
        eprintln!(
            "build-image: WARNING: the registry cache {} does not answer ({}); building \
             without it: slower, not failed",
            repository.name(),
            format!("{error:#}")
                .split("; check")
                .next()
                .unwrap_or_default()
        );
        return None;
    }
    eprintln!(
        "build-image: registry cache {}: layers this storage lacks are taken from it, and \
         new ones kept there",
        repository.name()
    );
    if !engine.looks_up_cache_after_arg() {
        eprintln!(
            "build-image: note: podman {} does not look the cache up after an ARG inside a \
             stage (buildah#4315, fixed in podman 4.4): that stage's later steps are built \
             again; declare such ARGs in a stage of their own, as \
             containers/rc-web/Containerfile does",
            engine.version
        );
    }
    Some(LayerCache {
        repository: repository.name(),
        destination: Destination {
            registry: repository.registry.clone(),
            tls_verify,
            format: flags::Format::Oci,
            authfile: login.and_then(|login| login.authfile.clone()),
            skopeo_runtime_dir: login.and_then(|login| login.skopeo_runtime_dir.clone()),
        },
    })
}

/// Builds what was prepared, prints the summary, cleans when asked (after
/// `alongside`'s steps, see [`execute_alongside`]: build-and-push's push
/// starts as soon as the list is verified).
pub fn run_prepared<'a>(
    prepared: &'a Prepared,
    build: &flags::BuildFlags,
    runner: &Runner,
    alongside: Option<&'a Alongside<'a>>,
) -> Result<Outcome> {
    let outcome = execute_alongside(&prepared.plan, runner, alongside)?;
    if runner.acts() {
        print_summary(&outcome, &prepared.release.tags, &prepared.phases);
    } else {
        for note in &prepared.release.tags.notes {
            eprintln!("build-image: note: {note}");
        }
    }
    if build.clean {
        crate::clean::clean(runner)?;
    }
    Ok(outcome)
}

impl flags::BuildImage {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self.image);
        let prepared = prepare(&self.image, &self.build, &runner, &[])?;
        let _lock = prepared.release.lock(&runner, "build-image")?;
        let outcome = run_prepared(&prepared, &self.build, &runner, None)?;
        Ok(if outcome.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}
