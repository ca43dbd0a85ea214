//! `push-image`: push the lists of the last build, every tag with all its
//! images, then read each tag back from the registry.

use anyhow::{bail, Result};

use crate::{
    build_image,
    exec::Runner,
    flags,
    git::SourceState,
    platform::{self, Platform},
    podman, project,
    push::{self, Destination, PrivateAuth},
    reference::Repository,
    tags,
};

#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    pub platforms: Vec<Platform>,
    pub pushed: Vec<String>,
    /// Tags not pushed because their local list is not from this build.
    pub skipped: Vec<String>,
}

/// The digests a list refers to: two names with the same digests are one build.
fn list_digests(runner: &Runner, name: &str) -> Result<Option<Vec<String>>> {
    if !runner.succeeds(&podman::manifest_exists(name))? {
        return Ok(None);
    }
    let list = podman::ManifestList::parse(&runner.read(&podman::manifest_inspect(name))?)?;
    let mut digests: Vec<String> = list
        .manifests
        .into_iter()
        .map(|entry| entry.digest)
        .collect();
    digests.sort();
    Ok(Some(digests))
}

/// Everything a push needs, checked before anything is built or pushed:
/// names, tags, the work tree, credentials, that the registry answers, and
/// (with credentials) the login itself.
pub struct PushSession {
    repository: Repository,
    tags: tags::Tags,
    destination: Destination,
    attempts: u32,
    /// Keeps this run's private auth file until the session ends.
    _auth: Option<PrivateAuth>,
}

impl PushSession {
    pub fn open(
        image: &flags::ImageFlags,
        push_flags: &flags::PushFlags,
        runner: &Runner,
    ) -> Result<PushSession> {
        let repository = Repository::new(&image.registry, &image.image);
        let source = SourceState::read(&project::root());
        let tags = source.as_ref().ok().map(|source| {
            tags::compute(
                source,
                &tags::Choices {
                    override_tags: image.tags.clone(),
                    no_latest: image.no_latest,
                },
            )
        });
        let credentials =
            push::credentials_from_env(&image.registry, |name| std::env::var(name).ok());
        let mut problems = Vec::new();
        for error in [
            repository.as_ref().err(),
            source.as_ref().err(),
            tags.as_ref().and_then(|tags| tags.as_ref().err()),
            credentials.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            problems.push(format!("{error:#}"));
        }
        if !problems.is_empty() {
            return Err(crate::BadInput(problems).into());
        }
        let (repository, source, tags, credentials) = (
            repository?,
            source?,
            tags.expect("source was read")?,
            credentials?,
        );
        if source.dirty && !push_flags.allow_dirty && image.tags.is_empty() {
            return Err(crate::BadInput(vec![format!(
                "the work tree has uncommitted changes, so the image would not match any commit; \
                 commit (or stash) and rebuild, or pass --allow-dirty to push {} anyway",
                repository.with_tag(tags.primary())
            )])
            .into());
        }
        if !runner.dry_run {
            push::check_reachable(&repository.registry, push_flags.tls_verify)
                .map_err(|error| crate::BadInput(vec![format!("{error:#}")]))?;
        }
        let auth = credentials
            .as_ref()
            .map(|_| PrivateAuth::create())
            .transpose()?;
        let destination = Destination {
            registry: repository.registry.clone(),
            tls_verify: push_flags.tls_verify,
            format: push_flags.format,
            authfile: auth.as_ref().map(PrivateAuth::file),
        };
        if let (Some(credentials), Some(authfile)) = (&credentials, &destination.authfile) {
            eprintln!(
                "push: logging in to {} as {} (from {})",
                repository.registry, credentials.username, credentials.source
            );
            push::log_in(runner, &destination, authfile, credentials)?;
        }
        Ok(PushSession {
            repository,
            tags,
            destination,
            attempts: push_flags.attempts,
            _auth: auth,
        })
    }

    /// Pushes every tag whose local list is this build's, then reads each
    /// back from the registry. `expected`: the platforms the lists must hold.
    pub fn push(&self, expected: Option<&[Platform]>, runner: &Runner) -> Result<PushOutcome> {
        let repository = &self.repository;
        let primary = repository.with_tag(self.tags.primary());
        let mut outcome = PushOutcome::default();
        if runner.dry_run {
            outcome.platforms = expected.map(<[Platform]>::to_vec).unwrap_or_default();
            outcome.pushed = self.tags.for_result(true, true);
        } else {
            let Some(primary_digests) = list_digests(runner, &primary)? else {
                bail!(
                    "there is no local manifest list {primary} to push; build it first with \
                     `cargo xtask build-image` (same --registry, --image and --tag)"
                );
            };
            outcome.platforms = build_image::verified_platforms(runner, &primary)?;
            if let Some(expected) = expected {
                let mut wanted = expected.to_vec();
                wanted.sort();
                let mut found = outcome.platforms.clone();
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
            for tag in self.tags.for_result(true, true) {
                let reference = repository.with_tag(&tag);
                if list_digests(runner, &reference)?.as_ref() == Some(&primary_digests) {
                    outcome.pushed.push(tag);
                } else {
                    outcome.skipped.push(tag);
                }
            }
        }
        let mut done: Vec<&str> = Vec::new();
        for tag in &outcome.pushed {
            let reference = repository.with_tag(tag);
            let pushed = crate::interrupt::check().and_then(|()| {
                push::run_with_retries(
                    runner,
                    &push::push_command(&self.destination, &reference, &reference),
                    self.attempts,
                    "",
                )
            });
            if let Err(error) = pushed {
                let not_done: Vec<&str> = outcome
                    .pushed
                    .iter()
                    .map(String::as_str)
                    .filter(|tag| !done.contains(tag))
                    .collect();
                let done_text = if done.is_empty() {
                    "none".to_owned()
                } else {
                    done.join(", ")
                };
                return Err(error.context(format!(
                    "push of {reference} failed; updated in the registry: {done_text}; NOT updated: {}. \
                     Run the same command again to finish",
                    not_done.join(", ")
                )));
            }
            done.push(tag);
        }
        if !runner.dry_run {
            for tag in &outcome.pushed {
                push::verify_remote(
                    runner,
                    &self.destination,
                    &repository.with_tag(tag),
                    &outcome.platforms,
                )?;
            }
        }
        Ok(outcome)
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }
}

pub fn print_summary(outcome: &PushOutcome, repository: &str) {
    eprintln!("\npush-image: summary");
    eprintln!("  platforms: {}", platform::join(&outcome.platforms));
    for tag in &outcome.pushed {
        eprintln!(
            "  pushed:    {repository}:{tag} (read back from the registry: every platform present)"
        );
    }
    for tag in &outcome.skipped {
        eprintln!(
            "  skipped:   {repository}:{tag} (the local list with this tag is not from this build)"
        );
    }
}

impl flags::PushImage {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let _lock = build_image::lock_repository(&self.image, "push-image")?;
        let expected = self.platforms.as_ref().map(|list| list.0.as_slice());
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        let outcome = session.push(expected, &runner)?;
        if !runner.dry_run {
            print_summary(&outcome, &session.repository().name());
        }
        Ok(crate::Status::Success)
    }
}

impl flags::BuildAndPush {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let _lock = build_image::lock_repository(&self.image, "build-and-push")?;
        // Everything the push needs is checked (and the login done) before
        // the build, so a dirty tree, wrong credentials or an unreachable
        // registry cost nothing.
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        let built = build_image::run_build(&self.image, &self.build, &runner)?;
        crate::interrupt::check()?;
        let outcome = session.push(Some(&built.built), &runner)?;
        if !runner.dry_run {
            print_summary(&outcome, &session.repository().name());
        }
        Ok(if built.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}
