//! `build-image`: plan the podman invocations, run them, fall back to one
//! platform at a time when the all-at-once build fails, verify the result, and
//! only then give the manifest list its tags.
//!
//! Builds go into a temporary list. The lists the user sees are replaced only
//! after the temporary one holds exactly the platforms that built, each image
//! built for the platform its entry claims; a failed build leaves the previous
//! lists as they were, and a rerun never accumulates entries.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{
    base_images, disk,
    engine::local_list,
    engine::podman::{self, BuildArg},
    engine::Engine,
    exec::{Command, Runner},
    flags, interrupt,
    platform::{self, Platform},
    project,
    release::git::SourceState,
    release::reference::Repository,
    release::tags::{self, Tags},
    setup,
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
    /// The Containerfile compiles every target in one stage (`ARG
    /// RUST_TARGETS`): each build says which targets it makes.
    pub shared_compile_stage: bool,
    /// The Containerfile is built in three steps (`ARG DEPENDENCIES_IMAGE`
    /// and `ARG LIBRARY_IMAGE`; see [`Stage`]).
    pub staged: bool,
    pub no_cache: bool,
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
}

/// A build that runs before the image's own, into a list of its own that
/// the later builds name in a build argument; removed when the run ends.
///
/// A staged Containerfile (rc-web's) is built in three steps: its
/// `dependencies` stage for the build platform only (it compiles for every
/// target), its `library` stage for the target platforms (`DEPENDENCIES_IMAGE`
/// = the first), both dated [`STAGE_TIMESTAMP`], and then the image itself
/// (`DEPENDENCIES_IMAGE`, `LIBRARY_IMAGE` = the second), dated by the commit.
/// podman's `--timestamp` dates every layer one build makes, so only this way
/// does the library's layer stay the same from one release to the next when
/// the dependencies do, also where nothing is cached (a fresh CI runner): the
/// registry already has it, and the release uploads the binary's layer only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
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
    /// The first build attempt: one command all at once, or one per platform.
    pub builds: Vec<PlatformBuild>,
    /// Each platform alone: the fallback when the all-at-once build fails, and
    /// the repair when it leaves a platform out of the list (a podman 4.3 bug).
    pub single_platform_builds: Vec<PlatformBuild>,
    pub tags: Tags,
    pub strict: bool,
    pub latest_on_partial: bool,
}

/// Computes every podman build invocation; spawns nothing.
pub fn plan(request: &Request, environment: &Environment) -> Plan {
    let temporary_list = request
        .repository
        .with_tag(&format!("build-{}", environment.run_id));
    let list_id_file = environment
        .scratch
        .join(format!("build-{}.list-id", environment.run_id));
    let volumes: Vec<String> = environment
        .ca_bundle
        .iter()
        .map(|path| format!("{0}:{0}:ro", path.display()))
        .collect();
    // Ours first, the user's after: a user's value for one of ours wins.
    let with_user_args = |ours: Vec<BuildArg>| -> Vec<BuildArg> {
        ours.into_iter()
            .chain(request.build_args.iter().cloned())
            .collect()
    };
    let arg = |name: &str, value: String| BuildArg {
        name: name.into(),
        value,
    };
    let podman_build = |platforms: Vec<Platform>, manifest: String| podman::Build {
        containerfile: request.containerfile.clone(),
        context: request.context.clone(),
        platforms,
        build_platform: environment.build_platform,
        manifest,
        target: None,
        build_args: Vec::new(),
        volumes: volumes.clone(),
        labels: Vec::new(),
        timestamp: Some(environment.source.commit_time),
        no_cache: request.no_cache,
        iid_file: None,
    };
    // The all-at-once build, or one platform alone (`platforms` is one).
    let build_for = |platforms: Vec<Platform>, all_at_once: bool| {
        // The stages' lists: one set for the all-at-once build and one per
        // platform alone, so that a fallback never adds to the first's.
        let suffix = if all_at_once {
            String::new()
        } else {
            platforms
                .iter()
                .map(|platform| format!("-{}", platform.arch.oci_name()))
                .collect()
        };
        let rust_targets = arg(
            "RUST_TARGETS",
            platforms
                .iter()
                .map(|platform| platform.arch.oci_name())
                .collect::<Vec<_>>()
                .join(" "),
        );
        let mut ours = vec![
            arg("GIT_REVISION", revision_label(&environment.source)),
            arg("BUILD_DATE", environment.source.commit_date()),
        ];
        let mut stages = Vec::new();
        if request.staged {
            let dependencies = format!("{temporary_list}-dependencies{suffix}");
            let library = format!("{temporary_list}-library{suffix}");
            let mut first = podman_build(vec![environment.build_platform], dependencies.clone());
            first.target = Some("dependencies".into());
            first.build_args = with_user_args(
                request
                    .shared_compile_stage
                    .then(|| rust_targets.clone())
                    .into_iter()
                    .collect(),
            );
            first.timestamp = Some(STAGE_TIMESTAMP);
            let mut second = podman_build(platforms.clone(), library.clone());
            second.target = Some("library".into());
            second.build_args =
                with_user_args(vec![arg("DEPENDENCIES_IMAGE", dependencies.clone())]);
            second.timestamp = Some(STAGE_TIMESTAMP);
            ours.splice(
                0..0,
                [
                    arg("DEPENDENCIES_IMAGE", dependencies.clone()),
                    arg("LIBRARY_IMAGE", library.clone()),
                ],
            );
            stages = vec![
                Stage {
                    list: dependencies,
                    command: first.command(),
                },
                Stage {
                    list: library,
                    command: second.command(),
                },
            ];
        } else if request.shared_compile_stage {
            ours.push(rust_targets);
        }
        let mut build = podman_build(platforms, temporary_list.clone());
        build.build_args = with_user_args(ours);
        build.labels = request.labels.clone();
        build.iid_file = all_at_once.then(|| list_id_file.clone());
        PlatformBuild {
            platform: None,
            stages,
            command: build.command(),
        }
    };
    let single_platform_builds: Vec<PlatformBuild> = request
        .platforms
        .iter()
        .map(|&platform| PlatformBuild {
            platform: Some(platform),
            ..build_for(vec![platform], false)
        })
        .collect();
    let builds = match request.mode {
        Mode::AllAtOnce => vec![build_for(request.platforms.clone(), true)],
        Mode::PerPlatform => single_platform_builds.clone(),
    };
    Plan {
        platforms: request.platforms.clone(),
        mode: request.mode,
        repository: request.repository.clone(),
        temporary_list,
        list_id_file,
        builds,
        single_platform_builds,
        tags: request.tags.clone(),
        strict: request.strict,
        latest_on_partial: request.latest_on_partial,
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
    platform
        .map(|platform| format!("[{platform}] "))
        .unwrap_or_default()
}

/// What a build produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub built: Vec<Platform>,
    pub failed: Vec<Platform>,
    /// Full references of the lists now tagged (`ghcr.io/x/rc-web:v1.2.3`).
    pub tagged: Vec<String>,
    /// Tags the rules would give a complete result, held back from this one.
    pub held_back: Vec<String>,
    /// True when the all-at-once build failed and platforms were built one by one.
    pub fell_back: bool,
    /// Image ID of the verified list, when this run knows it without asking:
    /// the all-at-once build wrote it (`--iidfile`) and no platform was added
    /// after (putting the entries in order keeps the ID).
    pub list_id: Option<String>,
}

impl Outcome {
    pub fn is_partial(&self) -> bool {
        !self.failed.is_empty()
    }
}

/// Runs the plan. On failure the temporary list is removed and the tagged
/// lists are left as they were.
///
/// Once the list is verified, `alongside` (if any) runs with its image ID
/// while the local tags move (build-and-push starts its push there: the push
/// reads the list by ID, so the renaming cannot disturb it). Without
/// a known ID (the fallback paths, a dry run), the tags move first and
/// `alongside` is not run. Its result comes back apart from the build's: a
/// failed push does not undo the local tags.
pub fn execute_alongside<T: Send>(
    plan: &Plan,
    runner: &Runner,
    alongside: Option<impl FnOnce(&Outcome, &str) -> Result<T> + Send>,
) -> Result<(Outcome, Option<Result<T>>)> {
    // A second early: podman's creation times are whole seconds.
    let started = unix_time() - 1;
    let mut stage_lists = Vec::new();
    let built = build_and_verify(plan, runner, &mut stage_lists);
    remove_stage_lists(runner, &stage_lists);
    let result = built.and_then(|outcome| {
        let outcome = with_tags(plan, outcome);
        match (outcome.list_id.clone(), alongside) {
            (Some(list_id), Some(alongside)) if !runner.dry_run => std::thread::scope(|scope| {
                let side = scope.spawn(|| alongside(&outcome, &list_id));
                let published = publish(plan, runner, &outcome);
                let side = side
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the push thread panicked")));
                match (published, side) {
                    (Ok(()), side) => Ok((outcome.clone(), Some(side))),
                    (Err(error), Ok(_)) => Err(error.context(
                        "the push finished (the registry has the new list), but the local \
                         list was not tagged",
                    )),
                    (Err(error), Err(push_error)) => {
                        Err(error.context(format!("the push failed too: {push_error:#}")))
                    }
                }
            }),
            _ => publish(plan, runner, &outcome).map(|()| (outcome, None)),
        }
    });
    if result.is_err() && !runner.dry_run {
        remove_list_if_present(runner, &plan.temporary_list);
        if interrupt::received().is_some() {
            remove_new_build_containers(runner, started);
        }
    }
    result
}

fn unix_time() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// After an interrupted build: the working containers podman had no chance
/// to remove (those created since this run started).
fn remove_new_build_containers(runner: &Runner, started: i64) {
    let containers = match crate::clean::build_containers(runner) {
        Ok(containers) => containers,
        Err(error) => {
            eprintln!("build-image: warning: cannot list build containers: {error:#}");
            return;
        }
    };
    for id in containers
        .iter()
        .filter(|container| container.created >= started)
        .map(|container| &container.id)
    {
        eprintln!("build-image: removing build container {id:.12} of the interrupted build");
        if let Err(error) = runner.run(&podman::container_remove(id)) {
            eprintln!("build-image: warning: {error:#}");
        }
    }
}

fn build_and_verify(
    plan: &Plan,
    runner: &Runner,
    stage_lists: &mut Vec<String>,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    // The list as read after the build, while no later build changed it.
    let mut unchanged_list = None;
    match plan.mode {
        Mode::AllAtOnce => {
            let all = &plan.builds[0];
            let built = run_stages_and_build(all, runner, stage_lists);
            let list_id = read_list_id(&plan.list_id_file);
            // A build podman finished as the signal came is not used either.
            interrupt::check()?;
            if let Err(error) = built {
                if runner.dry_run {
                    return Err(error);
                }
                eprintln!(
                    "\nbuild-image: WARNING: the all-at-once build of {} failed: {}\n\
                     build-image: falling back to building each platform on its own\n",
                    platform::join(&plan.platforms),
                    first_line(&format!("{error:#}"))
                );
                outcome.fell_back = true;
                remove_list_if_present(runner, &plan.temporary_list);
                outcome.failed = build_each(plan, runner, &plan.platforms, stage_lists)?;
            } else if !runner.dry_run {
                let list = local_list::read(runner, &plan.temporary_list)?;
                let dropped: Vec<Platform> = plan
                    .platforms
                    .iter()
                    .copied()
                    .filter(|&platform| list.entries_for(platform).is_empty())
                    .collect();
                for &platform in &dropped {
                    eprintln!(
                        "build-image: warning: podman left {platform} out of the list although the build \
                         succeeded (a known podman 4.3 issue); building {platform} alone, from cache"
                    );
                }
                outcome.failed = build_each(plan, runner, &dropped, stage_lists)?;
                if dropped.is_empty() {
                    unchanged_list = Some(list);
                    outcome.list_id = list_id;
                }
            }
        }
        Mode::PerPlatform => {
            outcome.failed = build_each(plan, runner, &plan.platforms, stage_lists)?
        }
    }
    outcome.built = plan
        .platforms
        .iter()
        .copied()
        .filter(|platform| !outcome.failed.contains(platform))
        .collect();
    if runner.dry_run {
        return Ok(outcome);
    }
    if outcome.built.is_empty() {
        bail!(
            "no platform built ({} failed; the output above says why). Check free space \
             (`cargo xtask check-disk-space`), qemu registration (`cargo xtask setup`), and try one \
             platform at a time (BUILD_PLATFORMS=linux/amd64)",
            platform::join(&outcome.failed)
        );
    }
    if plan.strict && outcome.is_partial() {
        bail!(
            "--strict: {} failed to build, so nothing was tagged ({} built); drop --strict to keep a partial result",
            platform::join(&outcome.failed),
            platform::join(&outcome.built)
        );
    }
    // podman made every entry of this list from an image it had just built,
    // and an entry's platform is its image's (buildah's `manifests.Add`
    // reads the image's config): checking the entries checks the images.
    let list = match unchanged_list {
        Some(list) => list,
        None => local_list::read(runner, &plan.temporary_list)?,
    };
    let entries = local_list::check_entries(&plan.temporary_list, &list, &outcome.built)?;
    put_in_order(runner, &plan.temporary_list, &list, &entries)?;
    Ok(outcome)
}

/// Puts the entries of a checked list in the order the platforms were asked
/// for, so that one commit always gives one list digest. podman 4.3 orders
/// the entries of a multi-platform build differently from one build to the
/// next (buildah issue 6383), and the fallback appends the platforms it
/// rebuilt. Adding an entry's image again moves the entry last (podman 4.3);
/// should a podman keep it in place instead, the entry is removed and added.
/// Either way the entry keeps its digest and the list its image ID, so
/// `Outcome.list_id` stays true. `entries` are [`local_list::check_entries`]' answer,
/// in the order wanted.
fn put_in_order(
    runner: &Runner,
    list_name: &str,
    list: &podman::ManifestList,
    entries: &[(Platform, String)],
) -> Result<()> {
    let (wanted, digests): (Vec<Platform>, Vec<String>) = entries.iter().cloned().unzip();
    let order = |list: &podman::ManifestList| -> Vec<Platform> {
        list.manifests
            .iter()
            .filter_map(|entry| entry.platform_string()?.parse().ok())
            .collect()
    };
    if entries_to_move(&order(list), &wanted).is_empty() {
        return Ok(());
    }
    // Every image ID first, so nothing is touched before its way back is
    // known.
    let image_ids = local_list::entry_image_ids(runner, list_name, &digests)?;
    eprintln!(
        "build-image: putting the entries of {list_name} in the requested order ({})",
        platform::join(&wanted)
    );
    let broken = || {
        format!(
            "cannot put the entries of {list_name} in order; nothing was tagged, and running the \
             same command again rebuilds it from cache"
        )
    };
    let mut current = list.clone();
    for remove_first in [false, true] {
        for platform in entries_to_move(&order(&current), &wanted) {
            let at = wanted
                .iter()
                .position(|&wanted| wanted == platform)
                .expect("moved platforms are wanted ones");
            if remove_first {
                runner
                    .run(&podman::manifest_remove_entry(list_name, &digests[at]))
                    .with_context(broken)?;
            }
            runner
                .run(&podman::manifest_add(list_name, &image_ids[at]))
                .with_context(broken)?;
        }
        current = local_list::read(runner, list_name)?;
        let now: Vec<&str> = current
            .manifests
            .iter()
            .map(|entry| entry.digest.as_str())
            .collect();
        if now == digests {
            return Ok(());
        }
        let same_entries = {
            let (mut now, mut wanted) = (now.clone(), digests.clone());
            now.sort_unstable();
            wanted.sort_unstable();
            now == wanted
        };
        if !same_entries {
            bail!(
                "{}: the entries are now {} (wanted {})",
                broken(),
                now.join(", "),
                digests.join(", ")
            );
        }
    }
    bail!(
        "{}: podman kept the order {}",
        broken(),
        platform::join(&order(&current))
    )
}

/// The platforms whose entries must move to the end of the list, in the order
/// to move them, to turn the `current` order into `wanted`: every platform
/// after the longest start of `wanted` that `current` already has in order.
fn entries_to_move(current: &[Platform], wanted: &[Platform]) -> Vec<Platform> {
    let mut kept = 0;
    for platform in current {
        if wanted.get(kept) == Some(platform) {
            kept += 1;
        }
    }
    wanted[kept..].to_vec()
}

/// The list ID the all-at-once build wrote (then the file goes); `None`
/// when it wrote none (it failed, or this is a dry run).
fn read_list_id(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let _ = std::fs::remove_file(file);
    let id = text.trim();
    (id.len() > "sha256:".len()).then(|| id.to_owned())
}

/// Builds each platform alone into the temporary list; returns those that failed.
fn build_each(
    plan: &Plan,
    runner: &Runner,
    platforms: &[Platform],
    stage_lists: &mut Vec<String>,
) -> Result<Vec<Platform>> {
    let mut failed = Vec::new();
    for build in plan
        .single_platform_builds
        .iter()
        .filter(|build| build.platform.is_some_and(|p| platforms.contains(&p)))
    {
        let platform = build.platform.expect("filtered on platform");
        interrupt::check()?;
        let built = run_stages_and_build(build, runner, stage_lists);
        interrupt::check()?;
        if let Err(error) = built {
            eprintln!(
                "\n[{platform}] build-image: FAILED: {}\n",
                first_line(&format!("{error:#}"))
            );
            failed.push(platform);
        }
    }
    Ok(failed)
}

/// Runs a build's stages, then the build; stops at the first that fails.
/// Adds each stage's list to `stage_lists` before it runs, for
/// [`remove_stage_lists`].
fn run_stages_and_build(
    build: &PlatformBuild,
    runner: &Runner,
    stage_lists: &mut Vec<String>,
) -> Result<()> {
    let prefix = prefix(build.platform);
    for stage in &build.stages {
        stage_lists.push(stage.list.clone());
        runner.run_prefixed(&stage.command, &prefix)?;
        interrupt::check()?;
    }
    runner.run_prefixed(&build.command, &prefix)
}

/// Removes the stages' lists (their images stay, as the layer cache).
fn remove_stage_lists(runner: &Runner, lists: &[String]) {
    if lists.is_empty() || runner.dry_run {
        return;
    }
    let names: Vec<&str> = lists.iter().map(String::as_str).collect();
    // One call for all; a stage that failed may have made no list, which
    // fails the call after the others are gone.
    if !runner
        .run_quietly(&podman::manifest_remove_all(&names))
        .unwrap_or(false)
    {
        for name in names {
            if runner
                .succeeds(&podman::manifest_exists(name))
                .unwrap_or(true)
            {
                eprintln!("build-image: warning: cannot remove the build's list {name}");
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The tags the verified list gets (all of them, or a partial result's),
/// as full references, and those held back.
fn with_tags(plan: &Plan, mut outcome: Outcome) -> Outcome {
    let complete = !outcome.is_partial();
    let tags = plan.tags.for_result(complete, plan.latest_on_partial);
    outcome.held_back = plan
        .tags
        .for_result(true, true)
        .into_iter()
        .filter(|tag| !tags.contains(tag))
        .collect();
    outcome.tagged = tags
        .iter()
        .map(|tag| plan.repository.with_tag(tag))
        .collect();
    outcome
}

/// Gives the verified temporary list every tag of `outcome.tagged`,
/// replacing older lists.
fn publish(plan: &Plan, runner: &Runner, outcome: &Outcome) -> Result<()> {
    interrupt::check()?;
    // Every tag moves, or (on an error) the ones already moved point to the
    // complete, verified list: never to a half-made one.
    let _deferred = interrupt::Deferred::new();
    // The previous list of each tag goes first (else it would linger
    // unnamed), all in one call; a tag that names nothing yet makes it
    // fail, harmlessly.
    let finals: Vec<&str> = outcome.tagged.iter().map(String::as_str).collect();
    if !runner.dry_run {
        runner.run_quietly(&podman::manifest_remove_all(&finals))?;
    }
    runner.run(&podman::tag_all(&plan.temporary_list, &finals))?;
    // Drops only the temporary name: the list keeps its tags.
    runner.run(&podman::manifest_remove(&plan.temporary_list))?;
    Ok(())
}

fn remove_list_if_present(runner: &Runner, name: &str) {
    if runner
        .succeeds(&podman::manifest_exists(name))
        .unwrap_or(false)
    {
        if let Err(error) = runner.run(&podman::manifest_remove(name)) {
            eprintln!("build-image: warning: cannot remove temporary list {name}: {error:#}");
        }
    }
}

pub fn print_summary(outcome: &Outcome, tags: &Tags) {
    eprintln!("\nbuild-image: summary");
    eprintln!("  built:   {}", platform::join(&outcome.built));
    if outcome.is_partial() {
        eprintln!(
            "  FAILED:  {} (see the output above)",
            platform::join(&outcome.failed)
        );
    }
    if outcome.fell_back {
        eprintln!("  note:    the all-at-once build failed; platforms were built one at a time");
    }
    for reference in &outcome.tagged {
        eprintln!("  tagged:  {reference}");
    }
    for tag in &outcome.held_back {
        eprintln!("  skipped: {tag} (partial result; --latest-on-partial moves it)");
    }
    for note in &tags.notes {
        eprintln!("  note:    {note}");
    }
}

/// Everything `build-image` needs before it spawns a build, checked up front:
/// inputs, names, tags, machine, disk, base images.
pub struct Prepared {
    pub plan: Plan,
    pub tags: Tags,
}

/// What a build or a push is named and tagged from, checked together with
/// the caller's own inputs so that one run lists every problem (exit 2).
pub struct Release {
    pub repository: Repository,
    pub source: SourceState,
    pub tags: Tags,
}

impl Release {
    pub fn read(image: &flags::ImageFlags, mut problems: Vec<String>) -> Result<Release> {
        let repository = Repository::new(&image.registry, &image.image);
        let date_override = source_date_epoch(std::env::var_os(podman::SOURCE_DATE_EPOCH));
        let source = SourceState::read(&project::root()).map(|mut source| {
            if let Ok(Some(epoch)) = date_override {
                source.commit_time = epoch;
            }
            source
        });
        let tags = source
            .as_ref()
            .ok()
            .map(|source| tags::compute(source, &tags::Choices::from_flags(image)));
        let errors = [
            repository.as_ref().err(),
            date_override.as_ref().err(),
            source.as_ref().err(),
            tags.as_ref().and_then(|tags| tags.as_ref().err()),
        ];
        problems.extend(
            errors
                .into_iter()
                .flatten()
                .map(|error| format!("{error:#}")),
        );
        if !problems.is_empty() {
            return Err(crate::BadInput(problems).into());
        }
        Ok(Release {
            repository: repository?,
            source: source?,
            tags: tags.expect("source was read")?,
        })
    }
}

/// An exported `SOURCE_DATE_EPOCH` dates the image instead of the commit
/// (the reproducible-builds convention; podman 5.6 reads it too). `None`
/// when unset or empty.
fn source_date_epoch(value: Option<std::ffi::OsString>) -> Result<Option<i64>> {
    let Some(value) = value.filter(|value| !value.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    match text.parse::<i64>() {
        Ok(seconds) if seconds >= 0 => Ok(Some(seconds)),
        _ => bail!(
            "{} is {text:?}, not a number of seconds since 1970; unset it to date the image by \
             its commit, or set it to e.g. $(git log -1 --format=%ct)",
            podman::SOURCE_DATE_EPOCH
        ),
    }
}

pub fn prepare(
    image: &flags::ImageFlags,
    build: &flags::BuildFlags,
    runner: &Runner,
) -> Result<Prepared> {
    let root = project::root();
    let containerfile = root.join(&build.containerfile);
    let context = root.join(&build.context);
    let mut problems: Vec<String> = Vec::new();
    if !containerfile.is_file() {
        problems.push(format!(
            "Containerfile {} does not exist; pass --file PATH",
            containerfile.display()
        ));
    }
    if !context.is_dir() {
        problems.push(format!(
            "build context {} is not a directory; pass --context DIR",
            context.display()
        ));
    }
    let Release {
        repository,
        source,
        tags,
    } = Release::read(image, problems)?;
    let platforms = build.platforms.0.clone();
    prepare_machine(runner, &platforms, !build.no_setup, build.force)?;
    let engine = Engine::read(runner)?;
    let build_platform = engine.build_platform;
    disk::check_before_build(
        runner,
        disk::BuildKind::for_build(&platforms, build.clean),
        build.force,
    )?;
    if uses_project_base_images(&containerfile, &build.build_args) {
        base_images::ensure(runner, build_platform, false)?;
    }
    let text = std::fs::read_to_string(&containerfile).unwrap_or_default();
    let shared_compile_stage = declares_arg(&text, "RUST_TARGETS");
    let staged = declares_arg(&text, "DEPENDENCIES_IMAGE") && declares_arg(&text, "LIBRARY_IMAGE");
    let request = Request {
        platforms,
        mode: if build.per_platform {
            Mode::PerPlatform
        } else {
            Mode::AllAtOnce
        },
        containerfile,
        context,
        repository,
        tags: tags.clone(),
        build_args: build.build_args.clone(),
        strict: build.strict,
        latest_on_partial: image.latest_on_partial,
        labels: crate::release::labels::labels(
            &crate::release::labels::Package::read(runner, &root)?,
            &source,
            tags.primary(),
        ),
        no_cache: build.no_cache,
        shared_compile_stage,
        staged,
    };
    let scratch = project::scratch_dir();
    if !runner.dry_run {
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
    }
    let environment = Environment {
        build_platform,
        ca_bundle: host_ca_bundle(engine),
        source,
        run_id: std::process::id().to_string(),
        scratch,
    };
    Ok(Prepared {
        plan: plan(&request, &environment),
        tags,
    })
}

/// Builds, prints the summary, cleans when asked. Shared with push-by-digest.
pub fn run_build(
    image: &flags::ImageFlags,
    build: &flags::BuildFlags,
    runner: &Runner,
) -> Result<Outcome> {
    run_build_alongside(
        image,
        build,
        runner,
        None::<fn(&Outcome, &str) -> Result<()>>,
    )
    .map(|(outcome, _)| outcome)
}

/// [`run_build`] with `alongside` (see [`execute_alongside`]):
/// build-and-push's push starts as soon as the list is verified. Cleaning
/// (`--clean`) waits for it.
pub fn run_build_alongside<T: Send>(
    image: &flags::ImageFlags,
    build: &flags::BuildFlags,
    runner: &Runner,
    alongside: Option<impl FnOnce(&Outcome, &str) -> Result<T> + Send>,
) -> Result<(Outcome, Option<Result<T>>)> {
    let prepared = prepare(image, build, runner)?;
    let (outcome, side) = execute_alongside(&prepared.plan, runner, alongside)?;
    if runner.dry_run {
        for note in &prepared.tags.notes {
            eprintln!("build-image: note: {note}");
        }
    } else {
        print_summary(&outcome, &prepared.tags);
    }
    if build.clean {
        crate::clean::clean(runner)?;
    }
    Ok((outcome, side))
}

/// The lock that keeps two runs from tagging or pushing one repository at once.
pub fn lock_repository(
    image: &flags::ImageFlags,
    what: &str,
) -> Result<Option<crate::release::lock::RepositoryLock>> {
    if image.dry_run {
        return Ok(None);
    }
    let name = format!("{}/{}", image.registry, image.image);
    crate::release::lock::RepositoryLock::acquire(&name, what).map(Some)
}

impl flags::BuildImage {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let _lock = lock_repository(&self.image, "build-image")?;
        let outcome = run_build(&self.image, &self.build, &runner)?;
        Ok(if outcome.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}

/// Runs setup when something the build needs is missing from this machine,
/// or (with `--no-setup`) refuses, naming what is missing and the fix.
fn prepare_machine(
    runner: &Runner,
    platforms: &[Platform],
    may_run_setup: bool,
    force: bool,
) -> Result<()> {
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
    let mut missing: Vec<String> = ["podman", "mmdebstrap"]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .map(|tool| {
            format!("{tool} is not installed (or not on PATH); run `sudo cargo xtask setup`")
        })
        .collect();
    if which::which("podman").is_err() {
        return Ok(missing);
    }
    let engine = Engine::read(runner)?;
    if engine.shares_this_host() {
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

fn check_engine(runner: &Runner, force: bool) -> Result<()> {
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
    Ok(())
}

/// Whether a Containerfile declares the build argument `name` (`ARG name`
/// or `ARG name=default`, alone or with others: `ARG A= B=x`).
fn declares_arg(containerfile: &str, name: &str) -> bool {
    containerfile.lines().any(|line| {
        line.trim_start().strip_prefix("ARG ").is_some_and(|rest| {
            rest.split_whitespace()
                .any(|word| word.split('=').next() == Some(name))
        })
    })
}

/// True unless the build uses another Containerfile or overrides both base images.
fn uses_project_base_images(containerfile: &Path, build_args: &[BuildArg]) -> bool {
    let overrides = |name: &str| build_args.iter().any(|build_arg| build_arg.name == name);
    containerfile == project::root().join(project::RC_WEB_CONTAINERFILE)
        && !(overrides("BUILDER_IMAGE") && overrides("RUNTIME_IMAGE"))
}

/// The host CA bundle, when podman runs on this host (not in a VM).
fn host_ca_bundle(engine: &Engine) -> Option<PathBuf> {
    let bundle = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    (engine.shares_this_host() && bundle.is_file()).then_some(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            shared_compile_stage: true,
            staged: false,
        }
    }

    fn environment(dirty: bool) -> Environment {
        Environment {
            build_platform: Platform::LINUX_AMD64,
            ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            source: source(dirty),
            run_id: "42".into(),
            scratch: PathBuf::from("/work/target/xtask"),
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
    fn a_staged_containerfile_builds_dependencies_then_library_then_the_image() {
        let staged = Request {
            staged: true,
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
    fn containerfiles_say_what_they_declare_in_arg_lines_only() {
        let text = "ARG LIBRARY_IMAGE=localhost/x\n  ARG RUST_TARGETS\n\
                    # ARG DEPENDENCIES_IMAGE\nARG DEPENDENCIES_IMAGE_OLD=1\n\
                    ARG GIT_REVISION= BUILD_DATE\nRUN echo ARG OTHER\n";
        assert!(declares_arg(text, "LIBRARY_IMAGE"));
        assert!(declares_arg(text, "RUST_TARGETS"));
        assert!(declares_arg(text, "GIT_REVISION"));
        assert!(declares_arg(text, "BUILD_DATE"));
        assert!(!declares_arg(text, "DEPENDENCIES_IMAGE"));
        assert!(!declares_arg(text, "OTHER"));
        // rc-web's own is staged and compiles every target in one stage.
        let ours = include_str!("../../../containers/rc-web/Containerfile");
        for name in ["DEPENDENCIES_IMAGE", "LIBRARY_IMAGE", "RUST_TARGETS"] {
            assert!(declares_arg(ours, name), "{name}");
        }
    }

    #[test]
    fn only_misplaced_entries_move_to_the_end() {
        let (amd64, arm64) = (Platform::LINUX_AMD64, Platform::LINUX_ARM64);
        // podman finished arm64 first: moving arm64 last is enough.
        assert_eq!(entries_to_move(&[arm64, amd64], &[amd64, arm64]), [arm64]);
        assert_eq!(entries_to_move(&[amd64, arm64], &[arm64, amd64]), [amd64]);
        assert!(entries_to_move(&[amd64, arm64], &[amd64, arm64]).is_empty());
        assert!(entries_to_move(&[arm64], &[arm64]).is_empty());
    }

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

    #[test]
    fn source_date_epoch_dates_the_image_when_exported() {
        let read = |value: &str| source_date_epoch(Some(value.into()));
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(read("").unwrap(), None);
        assert_eq!(read("1700000000").unwrap(), Some(1_700_000_000));
        for bad in ["yesterday", "-5", "1.5"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(
                error.contains("SOURCE_DATE_EPOCH") && error.contains("unset it"),
                "{error}"
            );
        }
        // podman never sees the variable: the date travels as --timestamp.
        let plan = plan(&request(Mode::AllAtOnce), &environment(false));
        let build = &plan.builds[0].command;
        assert_eq!(build.env_remove, ["SOURCE_DATE_EPOCH"]);
        assert!(build
            .to_string()
            .contains("| env -u SOURCE_DATE_EPOCH podman build "));
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
        let partial = Outcome {
            built: vec![Platform::LINUX_AMD64],
            failed: vec![Platform::LINUX_ARM64],
            ..Outcome::default()
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
