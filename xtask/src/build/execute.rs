//! The executor of a build plan: the builds, the fallback to one platform
//! at a time, the list's verification and order, and the tags, moved only
//! once all of that succeeded.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    engine::{local_list, podman},
    exec::{locked, Branch, Command, Runner, Step},
    interrupt,
    platform::{self, Platform},
    release::tags::Tags,
};

use super::plan::{Mode, Plan, PlatformBuild};

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
    /// Each stage's and build's wall time, in the order they ran (for the
    /// summary).
    pub build_times: Vec<(String, std::time::Duration)>,
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

/// The steps of a build-and-push that follow the local tags: the push of
/// `outcome`, from the list's image ID when the run knows it (then side by
/// side with the tags' move), else from the tags.
pub type Alongside<'a> = dyn Fn(&Outcome, Option<&str>) -> Vec<Step<'a>> + Sync + 'a;

/// Runs the plan (a dry run prints it). On failure the temporary list is
/// removed and the tagged lists are left as they were.
///
/// Once the list is verified, `alongside`'s steps (if any) run with its
/// image ID while the local tags move (build-and-push's push: it reads the
/// list by ID, so the renaming cannot disturb it). Without a known ID (the
/// fallback paths), the tags move first and `alongside` runs after.
pub fn execute_alongside<'a>(
    plan: &'a Plan,
    runner: &Runner,
    alongside: Option<&'a Alongside<'a>>,
) -> Result<Outcome> {
    // A second early: podman's creation times are whole seconds.
    let started = unix_time() - 1;
    let record = Shared::default();
    let result = runner.execute(steps(plan, &record, alongside));
    let record = std::mem::take(&mut *locked(&record));
    remove_stage_lists(runner, &record.stage_lists);
    if result.is_err() {
        runner.if_real(|| {
            remove_list_if_present(runner, &plan.temporary_list);
            if interrupt::received().is_some() {
                remove_new_build_containers(runner, started);
            }
            Ok(())
        })?;
    }
    result.map(|()| record.outcome(plan))
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

/// What a build's steps record as they run.
#[derive(Debug, Default)]
struct Record {
    failed: Vec<Platform>,
    fell_back: bool,
    /// The lists of the stages that ran (removed once the run is over).
    stage_lists: Vec<String>,
    /// Each stage's and build's wall time, in order (for the summary).
    build_times: Vec<(String, Duration)>,
    /// The list as read after the all-at-once build, while no later build
    /// changed it, and the ID that build wrote.
    unchanged_list: Option<podman::ManifestList>,
    list_id: Option<String>,
}

impl Record {
    fn outcome(&self, plan: &Plan) -> Outcome {
        let outcome = Outcome {
            built: plan
                .platforms
                .iter()
                .copied()
                .filter(|platform| !self.failed.contains(platform))
                .collect(),
            failed: self.failed.clone(),
            fell_back: self.fell_back,
            build_times: self.build_times.clone(),
            list_id: self.list_id.clone(),
            ..Outcome::default()
        };
        with_tags(plan, outcome)
    }
}

/// The record, shared by the steps that write it.
type Shared = Arc<Mutex<Record>>;

/// The plan's steps: the builds (the fallback an alternative of the
/// all-at-once build), the list's check and order, the tags.
fn steps<'a>(
    plan: &'a Plan,
    record: &Shared,
    alongside: Option<&'a Alongside<'a>>,
) -> Vec<Step<'a>> {
    let mut steps = match plan.mode {
        Mode::AllAtOnce => all_at_once(plan, record),
        Mode::PerPlatform => each_platform(plan, &plan.platforms, record),
    };
    steps.push(Step::then(
        format!(
            "the list is checked to hold {} and its entries put in that order",
            platform::join(&plan.platforms)
        ),
        Vec::new(),
        {
            let record = record.clone();
            move |runner| verify(plan, runner, &record).map(|()| Vec::new())
        },
    ));
    let expected = tag_steps(plan, &record_of_success(plan).outcome(plan), alongside);
    let record = record.clone();
    steps.push(Step::then("the tags move", expected, move |_| {
        let outcome = locked(&record).outcome(plan);
        Ok(tag_steps(plan, &outcome, alongside))
    }));
    steps
}

/// What a run records when everything goes as planned.
fn record_of_success(plan: &Plan) -> Record {
    Record {
        list_id: plan
            .list_id_expected
            .then(|| super::DRY_RUN_LIST_ID.to_owned()),
        ..Record::default()
    }
}

/// The all-at-once build, and what makes up for it: each platform on its
/// own when it fails (the fallback), and a platform podman left out of the
/// list although it built.
fn all_at_once<'a>(plan: &'a Plan, record: &Shared) -> Vec<Step<'a>> {
    let mut otherwise = vec![Step::work(
        format!(
            "{} is removed if the failed build left it",
            plan.temporary_list
        ),
        move |runner, _| {
            remove_list_if_present(runner, &plan.temporary_list);
            Ok(())
        },
    )];
    otherwise.extend(each_platform(plan, &plan.platforms, record));
    let (warned, record) = (record.clone(), record.clone());
    vec![
        Step::fallback(
            build_steps(&plan.builds[0], &record),
            "each platform on its own",
            move |error| {
                eprintln!(
                    "\nbuild-image: WARNING: the all-at-once build of {} failed: {}\n\
                     build-image: falling back to building each platform on its own\n",
                    platform::join(&plan.platforms),
                    crate::exec::first_line(&format!("{error:#}"))
                );
                locked(&warned).fell_back = true;
                Ok(())
            },
            otherwise,
        ),
        Step::then(
            "a platform podman left out of the list is built on its own",
            Vec::new(),
            move |runner| {
                let list_id = read_list_id(&plan.list_id_file);
                if locked(&record).fell_back {
                    return Ok(Vec::new());
                }
                let list = local_list::read(runner, &plan.temporary_list)?;
                let dropped: Vec<Platform> = plan
                    .platforms
                    .iter()
                    .copied()
                    .filter(|&platform| list.entries_for(platform).is_empty())
                    .collect();
                for &platform in &dropped {
                    eprintln!(
                        "build-image: warning: podman left {platform} out of the list although \
                         the build succeeded (a known podman 4.3 issue); building {platform} \
                         alone, from cache"
                    );
                }
                if dropped.is_empty() {
                    let mut record = locked(&record);
                    record.unchanged_list = Some(list);
                    record.list_id = list_id;
                }
                Ok(each_platform(plan, &dropped, &record))
            },
        ),
    ]
}

/// The list's check once every build ran: something built, `--strict`
/// honoured, each entry the platform it claims, the entries in order.
fn verify(plan: &Plan, runner: &Runner, record: &Mutex<Record>) -> Result<()> {
    let (outcome, unchanged_list) = {
        let mut record = locked(record);
        (record.outcome(plan), record.unchanged_list.take())
    };
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
    let label = plan
        .entry_label
        .as_ref()
        .map(|(key, value)| (key.as_str(), value.as_str()));
    put_in_order(runner, &plan.temporary_list, &list, &entries, label)
}

/// The tags' move, and the push `alongside` plans: side by side when the
/// list's ID is known, else one after the other.
fn tag_steps<'a>(
    plan: &'a Plan,
    outcome: &Outcome,
    alongside: Option<&'a Alongside<'a>>,
) -> Vec<Step<'a>> {
    let tags = publish(plan, outcome);
    match (alongside, outcome.list_id.as_deref()) {
        (Some(alongside), Some(list_id)) => vec![Step::Together(vec![
            Branch {
                name: "tags".into(),
                steps: tags,
            },
            Branch {
                name: "push".into(),
                steps: alongside(outcome, Some(list_id)),
            },
        ])],
        (Some(alongside), None) => {
            let mut steps = tags;
            steps.extend(alongside(outcome, None));
            steps
        }
        (None, _) => tags,
    }
}

/// Puts the entries of a checked list in the order the platforms were asked
/// for, so that one commit always gives one list digest. podman 4.3 orders
/// the entries of a multi-platform build differently from one build to the
/// next (buildah issue 6383), and the fallback appends the platforms it
/// rebuilt. Adding an entry's image again moves the entry last (podman 4.3);
/// should a podman keep it in place instead, the entry is removed and added.
/// Either way the entry keeps its digest and the list its image ID, so
/// `Outcome.list_id` stays true. `entries` are [`local_list::check_entries`]' answer,
/// in the order wanted; `label`: see [`local_list::entry_image_ids`].
fn put_in_order(
    runner: &Runner,
    list_name: &str,
    list: &podman::ManifestList,
    entries: &[(Platform, String)],
    label: Option<(&str, &str)>,
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
    let image_ids = local_list::entry_image_ids(runner, list_name, &digests, label)?;
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

/// Each of `platforms` alone into the temporary list; a platform that
/// fails is recorded, and the others still build.
fn each_platform<'a>(plan: &'a Plan, platforms: &[Platform], record: &Shared) -> Vec<Step<'a>> {
    plan.single_platform_builds
        .iter()
        .filter(|build| build.platform.is_some_and(|p| platforms.contains(&p)))
        .map(|build| {
            let platform = build.platform.expect("filtered on platform");
            let failed = record.clone();
            Step::named(
                platform.to_string(),
                vec![Step::fallback(
                    build_steps(build, record),
                    format!("{platform} is left out"),
                    move |error| {
                        eprintln!(
                            "\n[{platform}] build-image: FAILED: {}\n",
                            crate::exec::first_line(&format!("{error:#}"))
                        );
                        locked(&failed).failed.push(platform);
                        Ok(())
                    },
                    Vec::new(),
                )],
            )
        })
        .collect()
}

/// A build's stages, then the build; each stage's list is recorded before
/// it runs (for [`remove_stage_lists`]), and each one's wall time.
fn build_steps<'a>(build: &'a PlatformBuild, record: &Shared) -> Vec<Step<'a>> {
    let platforms = build.platform.map_or_else(
        || "all platforms".to_owned(),
        |platform| platform.to_string(),
    );
    let timed = |what: String, list: Option<&'a String>, command: &'a Command| {
        let record = record.clone();
        Step::run_with(command.clone(), move |runner, command, prefix| {
            if let Some(list) = list {
                locked(&record).stage_lists.push(list.clone());
            }
            let started = Instant::now();
            let result = run_build(runner, command, prefix);
            locked(&record).build_times.push((what, started.elapsed()));
            result
        })
    };
    let mut steps: Vec<Step<'a>> = build
        .stages
        .iter()
        .map(|stage| {
            let what = format!("stage {} ({platforms})", stage.target);
            timed(what, Some(&stage.list), &stage.command)
        })
        .collect();
    steps.push(timed(format!("build ({platforms})"), None, &build.command));
    steps
}

/// One `podman build`. When the registry cache refused its layers (a push
/// denied, the registry gone mid-build), the build runs again without the
/// cache, from the layers it already has here: the cache makes a build
/// slower or faster, never failed.
fn run_build(runner: &Runner, command: &Command, prefix: &str) -> Result<()> {
    match runner.run_prefixed(command, prefix) {
        Err(error) if podman::failed_pushing_cache(&format!("{error:#}")) => {
            interrupt::check()?;
            eprintln!(
                "\n{prefix}build-image: WARNING: the registry cache did not take this build's \
                 layers (above); building again without it: slower, not failed\n"
            );
            runner.run_prefixed(&podman::without_layer_cache(command), prefix)
        }
        result => result,
    }
}

/// Removes the stages' lists (their images stay, as the layer cache).
fn remove_stage_lists(runner: &Runner, lists: &[String]) {
    if lists.is_empty() {
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
/// replacing older lists: every tag moves, or (on an error or an
/// interrupt) the ones already moved point to the complete, verified list,
/// never to a half-made one.
fn publish<'a>(plan: &Plan, outcome: &Outcome) -> Vec<Step<'a>> {
    let finals: Vec<&str> = outcome.tagged.iter().map(String::as_str).collect();
    vec![Step::Uninterrupted(vec![
        // The previous list of each tag goes first (else it would linger
        // unnamed), all in one call; a tag that names nothing yet makes it
        // fail, harmlessly.
        Step::run_ignoring_failure(podman::manifest_remove_all(&finals)),
        Step::run(podman::tag_all(&plan.temporary_list, &finals)),
        // Drops only the temporary name: the list keeps its tags.
        Step::run(podman::manifest_remove(&plan.temporary_list)),
    ])]
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

pub fn print_summary(outcome: &Outcome, tags: &Tags, before_build: &[(String, Duration)]) {
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
    eprintln!(
        "  seconds: {}",
        seconds_line(before_build.iter().chain(&outcome.build_times))
    );
}

/// `setup 1.2, base images 0.1, build (all platforms) 95.3` (pure).
pub fn seconds_line<'a>(phases: impl IntoIterator<Item = &'a (String, Duration)>) -> String {
    phases
        .into_iter()
        .map(|(name, elapsed)| format!("{name} {:.1}", elapsed.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seconds_line_names_each_phase_in_order() {
        let phases = [
            ("setup".to_owned(), Duration::from_millis(1240)),
            ("build (all platforms)".to_owned(), Duration::from_secs(95)),
        ];
        assert_eq!(
            seconds_line(&phases),
            "setup 1.2, build (all platforms) 95.0"
        );
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
}
