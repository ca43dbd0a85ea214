//! `push-image`: push the lists of the last build, every tag with all its
//! images, then read each tag back from the registry.

use anyhow::{bail, Context, Result};

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

pub fn run_push(
    image: &flags::ImageFlags,
    push_flags: &flags::PushFlags,
    expected_platforms: Option<&[Platform]>,
    runner: &Runner,
) -> Result<PushOutcome> {
    let repository = Repository::new(&image.registry, &image.image)
        .map_err(|error| crate::BadInput(vec![format!("{error:#}")]))?;
    let source = SourceState::read(&project::root())
        .map_err(|error| crate::BadInput(vec![format!("{error:#}")]))?;
    let tags = tags::compute(
        &source,
        &tags::Choices {
            override_tags: image.tags.clone(),
            no_latest: image.no_latest,
        },
    )
    .map_err(|error| crate::BadInput(vec![format!("{error:#}")]))?;
    if source.dirty && !push_flags.allow_dirty && image.tags.is_empty() {
        bail!(
            "the work tree has uncommitted changes, so the image would not match any commit; commit \
             (or stash) and rebuild, or pass --allow-dirty to push {} anyway",
            repository.with_tag(tags.primary())
        );
    }
    let credentials =
        push::credentials_from_env(&repository.registry, |name| std::env::var(name).ok())?;
    let primary = repository.with_tag(tags.primary());
    let mut outcome = PushOutcome::default();
    if runner.dry_run {
        outcome.platforms = expected_platforms
            .map(<[Platform]>::to_vec)
            .unwrap_or_default();
        outcome.pushed = tags.for_result(true, true);
    } else {
        let Some(primary_digests) = list_digests(runner, &primary)? else {
            bail!(
                "there is no local manifest list {primary} to push; build it first with \
                 `cargo xtask build-image` (same --registry, --image and --tag)"
            );
        };
        outcome.platforms = build_image::verified_platforms(runner, &primary)?;
        if let Some(expected) = expected_platforms {
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
        for tag in tags.for_result(true, true) {
            let reference = repository.with_tag(&tag);
            if list_digests(runner, &reference)?.as_ref() == Some(&primary_digests) {
                outcome.pushed.push(tag);
            } else {
                outcome.skipped.push(tag);
            }
        }
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
            "push-image: logging in to {} as {} (from {})",
            repository.registry, credentials.username, credentials.source
        );
        runner
            .run(&push::login_command(&destination, authfile, credentials))
            .with_context(|| {
                format!(
                    "cannot log in to {}; check {}",
                    repository.registry, credentials.source
                )
            })?;
    }
    let mut done: Vec<String> = Vec::new();
    for tag in &outcome.pushed {
        let reference = repository.with_tag(tag);
        let pushed = push::run_with_retries(
            runner,
            &push::push_command(&destination, &reference, &reference),
            push_flags.attempts,
            "",
        );
        if let Err(error) = pushed {
            let not_done: Vec<&String> = outcome
                .pushed
                .iter()
                .filter(|tag| !done.contains(tag))
                .collect();
            let done_text = if done.is_empty() {
                "none".to_owned()
            } else {
                done.join(", ")
            };
            let not_done_text = not_done
                .iter()
                .map(|tag| tag.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(error.context(format!(
                "push of {reference} failed; updated in the registry: {done_text}; NOT updated: {not_done_text}. \
                 Run the same command again to finish"
            )));
        }
        done.push(tag.clone());
    }
    if !runner.dry_run {
        for tag in &outcome.pushed {
            push::verify_remote(
                runner,
                &destination,
                &repository.with_tag(tag),
                &outcome.platforms,
            )?;
        }
    }
    Ok(outcome)
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
        let outcome = run_push(&self.image, &self.push, expected, &runner)?;
        if !runner.dry_run {
            print_summary(
                &outcome,
                &format!("{}/{}", self.image.registry, self.image.image),
            );
        }
        Ok(crate::Status::Success)
    }
}

impl flags::BuildAndPush {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let _lock = build_image::lock_repository(&self.image, "build-and-push")?;
        // A dirty tree is refused before the build, not after it.
        if !self.push.allow_dirty && self.image.tags.is_empty() {
            let source = SourceState::read(&project::root())?;
            if source.dirty {
                bail!("the work tree has uncommitted changes; commit them, or pass --allow-dirty to build and push anyway");
            }
        }
        let built = build_image::run_build(&self.image, &self.build, &runner)?;
        let outcome = run_push(&self.image, &self.push, Some(&built.built), &runner)?;
        if !runner.dry_run {
            print_summary(
                &outcome,
                &format!("{}/{}", self.image.registry, self.image.image),
            );
        }
        Ok(if built.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}
