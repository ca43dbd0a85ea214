//! Pushing a release. A [`PushSession`] checks everything a push needs
//! (names, tags, the work tree, credentials, every registry) before anything
//! is built; a [`PushPlan`] says what is pushed where, computed first from
//! what was read (the local lists, or the build's outcome); and
//! [`PushSession::execute`] walks it: a dry run prints the very commands a
//! real run runs. `push-image` and `build-and-push` are here; the release
//! jobs' `push-by-digest` and `merge` in [`by_digest`] and [`merge`].

mod builders;
mod by_digest;
mod merge;
mod steps;

use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

pub use crate::report::Pushed;

use crate::{
    build,
    engine::Destination,
    engine::{local_list, podman, Engine},
    exec::{locked, taken, Command, Runner},
    flags,
    platform::{self, Platform},
    registry::{self, PrivateAuth},
    release::{self, labels, reference::Repository, Release},
    report::Report,
    sign::Signing,
};

/// One registry a release goes to.
pub struct Target {
    pub repository: Repository,
    pub destination: Destination,
}

/// Everything a push needs, checked before anything is built or pushed:
/// names, tags, the work tree, credentials, that every registry answers,
/// and (with credentials) the logins themselves.
pub struct PushSession {
    /// The engine this run talks to, read once when the session opens.
    pub engine: &'static Engine,
    pub release: Release,
    pub targets: Vec<Target>,
    attempts: u32,
    /// Whether each registry's list is signed once pushed and read back.
    pub signing: Signing,
    /// The user's `--build-arg`s, when this run builds (for provenance).
    pub build_args: Vec<String>,
    /// Keeps this run's private auth file until the session ends.
    _auth: Option<PrivateAuth>,
}

/// What a push does, worked out before it starts: the same in a dry run
/// and a real run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    /// What every pushed tag must hold when read back.
    pub platforms: Vec<Platform>,
    /// Pushed to every registry, in this order (the first uploads the images).
    pub tags: Vec<String>,
    /// Tags not pushed: their local list is not this build's.
    pub skipped: Vec<String>,
    /// The local list every tag is pushed from (an image ID, or a name);
    /// `None`: each tag from the local list of the same name.
    pub source: Option<String>,
    /// Push the images with the list (`--all`); not for a list merged from
    /// images the registries already hold.
    pub with_images: bool,
}

impl PushSession {
    /// `problems`: the caller's own input problems, listed with the session's.
    pub fn open(
        image: &flags::ImageFlags,
        push_flags: &flags::PushFlags,
        sign: Option<&flags::SignFlags>,
        overrides: release::Overrides,
        problems: Vec<String>,
        runner: &Runner,
    ) -> Result<PushSession> {
        Self::open_checked(image, push_flags, sign, overrides, problems, runner, |_| {
            Vec::new()
        })
    }

    /// [`open`](Self::open), with the caller's checks of the release
    /// (`check`), whose problems are listed with the session's.
    /// `sign`: `None` for a step that is not a release (push-by-digest: the
    /// merge signs).
    pub fn open_checked(
        image: &flags::ImageFlags,
        push_flags: &flags::PushFlags,
        sign: Option<&flags::SignFlags>,
        overrides: release::Overrides,
        problems: Vec<String>,
        runner: &Runner,
        check: impl FnOnce(&Release) -> Vec<String>,
    ) -> Result<PushSession> {
        let release = Release::read(runner, image, overrides, problems)?;
        let mut problems = check(&release);
        let signing = match sign {
            Some(flags) => Signing::from_flags(flags, runner, &mut problems),
            None => Signing::Off("not a release (the merge signs it)".to_owned()),
        };
        let credentials: Vec<_> = release
            .repositories
            .iter()
            .map(|repository| {
                registry::credentials_from_env(&repository.registry, |name| {
                    std::env::var(name).ok()
                })
                .map_err(|error| problems.push(format!("{error:#}")))
                .ok()
                .flatten()
            })
            .collect();
        problems.extend(dirty_or_unreachable(&release, image, push_flags, runner));
        if !problems.is_empty() {
            return Err(crate::BadInput(problems).into());
        }
        let auth = credentials
            .iter()
            .any(Option::is_some)
            .then(PrivateAuth::create)
            .transpose()?;
        let engine = Engine::read(runner)?;
        let skopeo_runtime_dir =
            engine.runtime_dir_for_tools(std::env::var_os("XDG_RUNTIME_DIR").is_some());
        let mut targets = Vec::new();
        for (repository, credentials) in release.repositories.iter().zip(&credentials) {
            let destination = Destination {
                registry: repository.registry.clone(),
                tls_verify: push_flags.tls_verify,
                format: push_flags.format,
                authfile: auth.as_ref().map(PrivateAuth::file),
                skopeo_runtime_dir: skopeo_runtime_dir.clone(),
            };
            if let (Some(credentials), Some(authfile)) = (credentials, &destination.authfile) {
                eprintln!(
                    "push: logging in to {} as {} (from {})",
                    repository.registry, credentials.username, credentials.source
                );
                registry::log_in(runner, &destination, authfile, credentials)?;
            }
            targets.push(Target {
                repository: repository.clone(),
                destination,
            });
        }
        Ok(PushSession {
            engine,
            release,
            targets,
            attempts: push_flags.attempts,
            signing,
            build_args: Vec::new(),
            _auth: auth,
        })
    }

    /// The first registry's repository: it names the local lists.
    pub fn repository(&self) -> &Repository {
        self.release.repository()
    }

    /// How this session reaches each registry (for a registry cache there).
    pub fn logins(&self) -> Vec<&Destination> {
        self.targets
            .iter()
            .map(|target| &target.destination)
            .collect()
    }

    /// The plan of `push-image`: every tag whose local list is this
    /// build's (the same images as the primary tag's list), read from
    /// local storage, in a dry run too. `expected`: the platforms the lists
    /// must hold.
    pub fn plan_from_local_lists(
        &self,
        expected: Option<&[Platform]>,
        runner: &Runner,
    ) -> Result<PushPlan> {
        let primary = self.repository().with_tag(self.release.tags.primary());
        let Some(primary_digests) = list_digests(runner, &primary)? else {
            bail!(
                "there is no local manifest list {primary} to push; build it first with \
                 `cargo xtask build-image` (same --registry, --image and --tag)"
            );
        };
        let revision = self.release.source.revision();
        let platforms = local_list::verified_platforms(
            runner,
            &primary,
            Some((labels::REVISION, revision.as_str())),
        )?;
        if let Some(expected) = expected {
            let mut wanted = expected.to_vec();
            wanted.sort();
            let mut found = platforms.clone();
            found.sort();
            if wanted != found {
                bail!(
                    "{primary} holds {}, not {}; build those platforms first (or push with --platform {})",
                    platform::join(&found),
                    platform::join(&wanted),
                    platform::join(&found)
                );
            }
        }
        let mut plan = PushPlan {
            platforms,
            tags: Vec::new(),
            skipped: Vec::new(),
            source: None,
            with_images: true,
        };
        for tag in self.release.tags.for_result(true, true) {
            let reference = self.repository().with_tag(&tag);
            if list_digests(runner, &reference)?.as_ref() == Some(&primary_digests) {
                plan.tags.push(tag);
            } else {
                plan.skipped.push(tag);
            }
        }
        Ok(plan)
    }

    /// The plan of build-and-push's push: the tags the build gave its list,
    /// pushed from the list's image ID when known (it is, after an
    /// all-at-once build that needed no repair; a dry run names it), else
    /// from the local tags.
    pub fn plan_of_build(&self, built: &build::Outcome, list_id: Option<&str>) -> PushPlan {
        let prefix = format!("{}:", self.repository().name());
        PushPlan {
            platforms: built.built.clone(),
            tags: built
                .tagged
                .iter()
                .filter_map(|reference| reference.strip_prefix(&prefix).map(str::to_owned))
                .collect(),
            skipped: Vec::new(),
            source: list_id.map(str::to_owned),
            with_images: true,
        }
    }

    /// The command that pushes `tag` of `plan` to `target`.
    fn push_command(&self, target: &Target, plan: &PushPlan, tag: &str) -> Command {
        let local = plan
            .source
            .clone()
            .unwrap_or_else(|| self.repository().with_tag(tag));
        registry::push_list_command(
            &target.destination,
            &local,
            &target.repository.with_tag(tag),
            plan.with_images,
        )
    }
}

/// A push refused before anything runs: a dirty work tree (unless allowed
/// or the tags are given), or a registry that does not answer.
fn dirty_or_unreachable(
    release: &Release,
    image: &flags::ImageFlags,
    push_flags: &flags::PushFlags,
    runner: &Runner,
) -> Vec<String> {
    let mut problems = Vec::new();
    if release.source.dirty && !push_flags.allow_dirty && image.tags.is_empty() {
        problems.push(format!(
            "the work tree has uncommitted changes, so the image would not match any commit; \
             commit (or stash) and rebuild, or pass --allow-dirty to push {} anyway",
            release.repository().with_tag(release.tags.primary())
        ));
    }
    // A dry run pushes nothing, so it needs no registry.
    if runner.acts() {
        for repository in &release.repositories {
            if let Err(error) =
                registry::check_reachable(&repository.registry, push_flags.tls_verify)
            {
                problems.push(format!("{error:#}"));
            }
        }
    }
    problems
}

/// What a failed push leaves: the tags updated and not, and what to do.
fn not_updated(
    target: &Target,
    tags: &[String],
    failed: &[&String],
    error: &anyhow::Error,
) -> String {
    let (done, failed) = updated_and_not(tags, failed);
    // Refused (credentials, permissions): the same command would be
    // refused again.
    let next = if registry::is_permanent_failure(&format!("{error:#}")) {
        format!(
            "The registry refused: check the credentials (REGISTRY_USER/REGISTRY_TOKEN, \
             or `podman login {}`) and that they may push to {}, then run the command again",
            target.destination.registry,
            target.repository.name()
        )
    } else {
        "Run the same command again to finish".to_owned()
    };
    format!(
        "updated in the registry: {}; NOT updated: {}. {next}",
        if done.is_empty() {
            "none".to_owned()
        } else {
            done.join(", ")
        },
        failed.join(", ")
    )
}

/// The tags updated and those not, each in the release's order (not the
/// order in which the side-by-side pushes happened to end).
fn updated_and_not<'a>(tags: &'a [String], failed: &[&String]) -> (Vec<&'a str>, Vec<&'a str>) {
    tags.iter()
        .map(String::as_str)
        .partition(|tag| !failed.iter().any(|failed| failed.as_str() == *tag))
}

/// The list every tag holds, read back: one and the same under each.
fn one_list(
    first: &str,
    first_index: registry::RemoteIndex,
    read_back: Vec<(String, Result<registry::RemoteIndex>)>,
) -> Result<registry::RemoteIndex> {
    for (tag, index) in read_back {
        let index = index?;
        if index.digest != first_index.digest {
            bail!(
                "the registry holds {} under {tag} but {} under {first}: did another push \
                 change one of them meanwhile? Run the same command again",
                index.digest,
                first_index.digest
            );
        }
    }
    Ok(first_index)
}

/// The digests a list refers to: two names with the same digests are one build.
fn list_digests(runner: &Runner, name: &str) -> Result<Option<Vec<String>>> {
    if !runner.succeeds(&podman::manifest_exists(name))? {
        return Ok(None);
    }
    let list = crate::engine::local_list::read(runner, name)?;
    let mut digests: Vec<String> = list
        .manifests
        .into_iter()
        .map(|entry| entry.digest)
        .collect();
    digests.sort();
    Ok(Some(digests))
}

pub fn print_summary(session: &PushSession, plan: &PushPlan, pushed: &Pushed) {
    eprintln!("\npush-image: summary");
    eprintln!("  platforms: {}", platform::join(&plan.platforms));
    session.signing.print_summary(pushed);
    for (target, (_, result)) in session.targets.iter().zip(&pushed.results) {
        let repository = target.repository.name();
        match result {
            Ok(_) => {
                for tag in &plan.tags {
                    eprintln!(
                        "  pushed:    {repository}:{tag} (read back from the registry: every platform present)"
                    );
                }
            }
            Err(error) => eprintln!(
                "  FAILED:    {repository} ({})",
                crate::exec::first_line(&format!("{error:#}"))
            ),
        }
    }
    for tag in &plan.skipped {
        eprintln!(
            "  skipped:   {}:{tag} (the local list with this tag is not from this build)",
            session.repository().name()
        );
    }
}

impl flags::PushImage {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self.image);
        let mut problems = Vec::new();
        let expected = release::parse_platforms(self.platforms.as_deref(), &mut problems);
        let session = PushSession::open(
            &self.image,
            &self.push,
            Some(&self.sign),
            release::Overrides::default(),
            problems,
            &runner,
        )?;
        let _lock = session.release.lock(&runner, "push-image")?;
        let plan = session.plan_from_local_lists(expected.as_deref(), &runner)?;
        let pushed = session.execute(&plan, &runner)?;
        if runner.acts() {
            print_summary(&session, &plan, &pushed);
            report_of_push(&session, &plan, &pushed, &[], vec![])
                .emit("push-image", self.output.json)?;
        }
        pushed.into_result()?;
        Ok(crate::Status::Success)
    }
}

impl flags::BuildAndPush {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self.image);
        if self
            .builders
            .iter()
            .any(|builder| !builder.trim().is_empty())
        {
            return builders::run(&self, &runner);
        }
        // Everything the push needs is checked (and the logins done) before
        // the build, so a dirty tree, wrong credentials or an unreachable
        // registry cost nothing.
        let mut problems = Vec::new();
        build::parse_build_args(&self.build.build_args, &mut problems);
        if self.reproduce {
            problems.extend(crate::reproduce::problems(Engine::read(&runner)?));
        }
        let mut session = PushSession::open(
            &self.image,
            &self.push,
            Some(&self.sign),
            build::overrides(&self.build),
            problems,
            &runner,
        )?;
        session.build_args = self.build.build_args.clone();
        let prepared = build::prepare(&self.image, &self.build, &runner, &session.logins())?;
        let _lock = session.release.lock(&runner, "build-and-push")?;
        // The push starts as soon as the list is verified, from its image
        // ID, while the local tags move; else once they have moved.
        let pushed = Mutex::new(Pushed::default());
        let push_plan = Mutex::new(None);
        let alongside = |built: &build::Outcome, list_id: Option<&str>| {
            let plan = session.plan_of_build(built, list_id);
            *locked(&push_plan) = Some(plan.clone());
            session.push_steps(Arc::new(plan), &pushed)
        };
        let built = build::run_prepared(&prepared, &self.build, &runner, Some(&alongside));
        let pushed = taken(pushed);
        let built = built.map_err(|error| match pushed.remote() {
            Some(_) => error.context(
                "the push finished (the registry has the new list), but the local list was not \
                 tagged",
            ),
            None => error,
        })?;
        let plan = taken(push_plan).unwrap_or_else(|| session.plan_of_build(&built, None));
        if runner.acts() {
            print_summary(&session, &plan, &pushed);
            report_of_push(
                &session,
                &plan,
                &pushed,
                &built.failed,
                built.held_back.clone(),
            )
            .emit("build-and-push", self.output.json)?;
        }
        pushed.into_result()?;
        if self.reproduce && runner.acts() {
            reproduce_after(
                &session,
                &self.build.build_args,
                &runner,
                self.push.tls_verify,
            )?;
        }
        Ok(if built.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}

/// `--reproduce`: the release just pushed (the first registry's list,
/// by digest), rebuilt from its commit in a private storage and compared.
fn reproduce_after(
    session: &PushSession,
    build_args: &[String],
    runner: &Runner,
    tls_verify: bool,
) -> Result<()> {
    let reference = session
        .repository()
        .with_tag(session.release.tags.primary());
    let published = crate::reproduce::read_published(runner, &reference, tls_verify)?;
    let base_images = published
        .entries
        .iter()
        .flat_map(|(platform, _)| {
            crate::sign::base_images(
                runner,
                session.engine,
                &session.release,
                build_args,
                *platform,
            )
            .into_iter()
            .map(|base| crate::reproduce::recorded::RecordedBase::of(*platform, base))
        })
        .collect();
    let recorded = crate::reproduce::recorded::of_release(
        &session.release,
        build_args,
        &session.engine.version.to_string(),
        base_images,
    );
    let report =
        crate::reproduce::reproduce(runner, session.engine, &reference, &published, recorded)?;
    crate::reproduce::print(&report);
    if !report.identical {
        bail!(
            "{reference} is pushed, but NOT reproduced from its commit: the differences are above"
        );
    }
    Ok(())
}

pub(super) fn report_of_push(
    session: &PushSession,
    plan: &PushPlan,
    pushed: &Pushed,
    failed: &[Platform],
    held_back: Vec<String>,
) -> Report {
    let mut report = Report::of_list(
        session.repository().name(),
        plan.tags.clone(),
        held_back,
        pushed.remote(),
        failed,
        session.release.tags.notes.clone(),
    );
    report.images = session
        .targets
        .iter()
        .map(|target| target.repository.name())
        .collect();
    report.failed_registries = pushed.failed_registries();
    (report.signed, report.signature) = session.signing.state(pushed);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_push_names_its_tags_in_the_releases_order() {
        let tags: Vec<String> = ["v2.0.0", "abc1234", "latest"].map(String::from).into();
        // The side-by-side pushes ended latest first.
        let failed = [&tags[2], &tags[1]];
        assert_eq!(
            updated_and_not(&tags, &failed),
            (vec!["v2.0.0"], vec!["abc1234", "latest"])
        );
        assert_eq!(
            updated_and_not(&tags, &[]),
            (vec!["v2.0.0", "abc1234", "latest"], vec![])
        );
    }

    #[test]
    fn a_failed_registry_is_named_beside_those_that_have_the_release() {
        let pushed = Pushed {
            results: vec![
                ("ghcr.io".into(), Ok(None)),
                ("docker.io".into(), Err(anyhow::anyhow!("unauthorized"))),
            ],
        };
        assert_eq!(pushed.failed_registries(), ["docker.io"]);
        let error = format!("{:#}", pushed.into_result().unwrap_err());
        assert!(
            error.starts_with("the release is in ghcr.io but NOT in docker.io: the push to docker.io failed: unauthorized"),
            "{error}"
        );
        // All failed: the first error, as it is.
        let pushed = Pushed {
            results: vec![("ghcr.io".into(), Err(anyhow::anyhow!("down")))],
        };
        assert_eq!(
            format!("{:#}", pushed.into_result().unwrap_err()),
            "the push to ghcr.io failed: down"
        );
        assert!(Pushed {
            results: vec![("ghcr.io".into(), Ok(None))]
        }
        .into_result()
        .is_ok());
    }
}
