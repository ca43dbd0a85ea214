//! `push-image`: push the lists of the last build, every tag with all its
//! images, then read each tag back from the registry.

use anyhow::{bail, Context, Result};

use crate::{
    build,
    engine::podman,
    exec::Runner,
    flags,
    platform::{self, Platform},
    registry::{self, Destination, PrivateAuth},
    release::reference::Repository,
    release::tags,
    report::Report,
};

#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    pub platforms: Vec<Platform>,
    pub pushed: Vec<String>,
    /// Tags not pushed because their local list is not from this build.
    pub skipped: Vec<String>,
    /// The list as the registry holds it (read back after the push).
    pub remote: Option<registry::RemoteIndex>,
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
        let credentials =
            registry::credentials_from_env(&image.registry, |name| std::env::var(name).ok());
        let problems = credentials.as_ref().err().map(|error| format!("{error:#}"));
        let build::Release {
            repository,
            source,
            tags,
        } = build::Release::read(image, problems.into_iter().collect())?;
        let credentials = credentials?;
        if source.dirty && !push_flags.allow_dirty && image.tags.is_empty() {
            return Err(crate::BadInput(vec![format!(
                "the work tree has uncommitted changes, so the image would not match any commit; \
                 commit (or stash) and rebuild, or pass --allow-dirty to push {} anyway",
                repository.with_tag(tags.primary())
            )])
            .into());
        }
        if !runner.dry_run {
            registry::check_reachable(&repository.registry, push_flags.tls_verify)
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
            skopeo_runtime_dir: crate::engine::Engine::read(runner)?
                .runtime_dir_for_tools(std::env::var_os("XDG_RUNTIME_DIR").is_some()),
        };
        if let (Some(credentials), Some(authfile)) = (&credentials, &destination.authfile) {
            eprintln!(
                "push: logging in to {} as {} (from {})",
                repository.registry, credentials.username, credentials.source
            );
            registry::log_in(runner, &destination, authfile, credentials)?;
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
            outcome.platforms = crate::engine::local_list::verified_platforms(runner, &primary)?;
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
        self.push_tags(outcome, runner)
    }

    /// Pushes what this process just built and tagged (build-and-push): the
    /// lists were verified a moment ago, so they are not read again.
    pub fn push_built(&self, built: &build::Outcome, runner: &Runner) -> Result<PushOutcome> {
        if runner.dry_run {
            return self.push(Some(&built.built), runner);
        }
        self.push_tags(self.outcome_of_build(built), runner)
    }

    /// [`push_built`](Self::push_built) from the list's image ID, while the
    /// build is still moving its local tags (build-and-push).
    pub fn push_list(
        &self,
        built: &build::Outcome,
        list_id: &str,
        runner: &Runner,
    ) -> Result<PushOutcome> {
        self.push_tags_from(self.outcome_of_build(built), Some(list_id), runner)
    }

    /// What a push of this build's list will push: its platforms and tags.
    fn outcome_of_build(&self, built: &build::Outcome) -> PushOutcome {
        let prefix = format!("{}:", self.repository.name());
        PushOutcome {
            platforms: built.built.clone(),
            pushed: built
                .tagged
                .iter()
                .filter_map(|reference| reference.strip_prefix(&prefix).map(str::to_owned))
                .collect(),
            ..PushOutcome::default()
        }
    }

    fn push_tags(&self, outcome: PushOutcome, runner: &Runner) -> Result<PushOutcome> {
        self.push_tags_from(outcome, None, runner)
    }

    /// Pushes every tag of `outcome.pushed`, from `source` (a list ID) or
    /// from the local list of the same tag, and reads each back.
    fn push_tags_from(
        &self,
        mut outcome: PushOutcome,
        source: Option<&str>,
        runner: &Runner,
    ) -> Result<PushOutcome> {
        outcome.remote =
            self.push_and_verify_tags(&outcome.pushed, &outcome.platforms, runner, |reference| {
                registry::push_command(&self.destination, source.unwrap_or(reference), reference)
            })?;
        Ok(outcome)
    }

    /// Pushes this build's image for `platform` to `repository@digest`, with
    /// no tag; returns the digest.
    pub fn push_by_digest(&self, platform: Platform, runner: &Runner) -> Result<String> {
        let primary = self.repository.with_tag(self.tags.primary());
        if runner.dry_run {
            let directory = std::env::temp_dir().join("rc-xtask-digest-push");
            runner.run(&registry::save_for_digest_push(
                &self.destination,
                &format!("{primary}@<{platform} entry>"),
                &directory,
            ))?;
            runner.run(&registry::push_by_digest_command(
                &self.destination,
                &directory,
                &self.repository.name(),
                "<digest>",
            ))?;
            return Ok("sha256:<dry-run>".into());
        }
        let list = podman::ManifestList::parse(&runner.read(&podman::manifest_inspect(&primary))?)?;
        let entries = list.entries_for(platform);
        let [entry] = entries.as_slice() else {
            bail!("{primary} has no single {platform} entry; build it with `cargo xtask build-image --platform {platform}`");
        };
        // By image ID: `LIST@DIGEST` finds no image on podman 4.7 and later.
        let [image_id] = crate::engine::local_list::entry_image_ids(
            runner,
            &primary,
            std::slice::from_ref(&entry.digest),
        )?
        .try_into()
        .expect("one ID per digest");
        let directory = crate::project::TemporaryDirectory::create("rc-xtask-digest-push")?;
        runner.run(&registry::save_for_digest_push(
            &self.destination,
            &image_id,
            directory.path(),
        ))?;
        let manifest = std::fs::read(directory.path().join("manifest.json"))
            .context("podman wrote no manifest.json")?;
        let digest = registry::digest_of(&manifest);
        crate::interrupt::check()?;
        registry::run_with_retries(
            runner,
            &registry::push_by_digest_command(
                &self.destination,
                directory.path(),
                &self.repository.name(),
                &digest,
            ),
            self.attempts,
            "",
        )
        .with_context(|| {
            format!("push of {platform} by digest failed; run the same command again")
        })?;
        let remote = format!("{}@{digest}", self.repository.name());
        let raw = registry::read_back(
            runner,
            &registry::inspect_remote_command(&self.destination, &remote),
        )
        .with_context(|| format!("cannot read {remote} back from the registry"))?;
        if registry::digest_of(raw.as_bytes()) != digest {
            bail!("the registry holds different bytes under {remote}");
        }
        Ok(digest)
    }

    /// Assembles the images `digests` (already in the registry) into a list,
    /// gives it every tag the result earns, pushes it, and reads it back.
    pub fn merge(
        &self,
        digests: &[(String, String)],
        expected: &[Platform],
        strict: bool,
        latest_on_partial: bool,
        runner: &Runner,
    ) -> Result<MergeOutcome> {
        let list = self
            .repository
            .with_tag(&format!("merge-{}", std::process::id()));
        let repository = self.repository.name();
        if !runner.dry_run && runner.succeeds(&podman::manifest_exists(&list))? {
            runner.run(&podman::manifest_remove(&list))?;
        }
        runner.run(&podman::manifest_create(&list))?;
        let merged = (|| -> Result<MergeOutcome> {
            for (source, digest) in digests {
                runner
                    .run(&registry::manifest_add_remote(
                        &self.destination,
                        &list,
                        &format!("{repository}@{digest}"),
                    ))
                    .with_context(|| {
                        format!(
                            "cannot add {digest} (from {source}); was it pushed to {repository}?"
                        )
                    })?;
            }
            let built: Vec<Platform> = if runner.dry_run {
                expected.to_vec()
            } else {
                let present =
                    podman::ManifestList::parse(&runner.read(&podman::manifest_inspect(&list))?)?;
                let mut built = Vec::new();
                for entry in &present.manifests {
                    let claimed = entry
                        .platform_string()
                        .unwrap_or_else(|| "no platform".into());
                    let platform: Platform = claimed.parse().with_context(|| {
                        format!("image {} is for an unsupported platform", entry.digest)
                    })?;
                    if built.contains(&platform) {
                        bail!("two digests are images for {platform}; give each platform's digest once");
                    }
                    if !expected.contains(&platform) {
                        bail!(
                            "image {} is for {platform}, which is not in --platform {}",
                            entry.digest,
                            platform::join(expected)
                        );
                    }
                    built.push(platform);
                }
                built.sort_by_key(|platform| expected.iter().position(|wanted| wanted == platform));
                built
            };
            let failed: Vec<Platform> = expected
                .iter()
                .copied()
                .filter(|platform| !built.contains(platform))
                .collect();
            if strict && !failed.is_empty() {
                bail!(
                    "--strict: no image for {}; nothing was tagged",
                    platform::join(&failed)
                );
            }
            let complete = failed.is_empty();
            let tags = self.tags.for_result(complete, latest_on_partial);
            let held_back = self
                .tags
                .for_result(true, true)
                .into_iter()
                .filter(|tag| !tags.contains(tag))
                .collect();
            let remote = self.push_and_verify_tags(&tags, &built, runner, |reference| {
                registry::push_list_command(&self.destination, &list, reference, false)
            })?;
            Ok(MergeOutcome {
                built,
                failed,
                tags,
                held_back,
                remote,
            })
        })();
        if !runner.dry_run {
            let _ = runner.run(&podman::manifest_remove(&list));
        }
        merged
    }

    pub fn tags(&self) -> &tags::Tags {
        &self.tags
    }

    /// Pushes `tags` (each with retries) and reads each back from the
    /// registry, which must hold `platforms` under every tag, all as one
    /// list; returns that list. The first tag's push uploads what the
    /// registry lacks; the other tags then need only their manifests, so
    /// they are pushed at the same time (pushed together from the start,
    /// each would find the blobs missing and upload them). A failure says
    /// which tags the registry has and which it does not.
    fn push_and_verify_tags(
        &self,
        tags: &[String],
        platforms: &[Platform],
        runner: &Runner,
        command_for: impl Fn(&str) -> crate::exec::Command + Sync,
    ) -> Result<Option<registry::RemoteIndex>> {
        let push_one = |tag: &String, prefix: &str| -> Result<()> {
            crate::interrupt::check()?;
            let reference = self.repository.with_tag(tag);
            registry::run_with_retries(runner, &command_for(&reference), self.attempts, prefix)
                .with_context(|| format!("push of {reference} failed"))
        };
        let verify_one = |tag: &String| -> Result<registry::RemoteIndex> {
            registry::verify_remote(
                runner,
                &self.destination,
                &self.repository.with_tag(tag),
                platforms,
            )
        };
        let Some((first, rest)) = tags.split_first() else {
            return Ok(None);
        };
        if runner.dry_run {
            // Printed in order, as a script would run them.
            for tag in tags {
                push_one(tag, "")?;
            }
            return Ok(None);
        }
        let not_updated = |failed: &[&String]| {
            let done: Vec<&str> = tags
                .iter()
                .filter(|tag| !failed.contains(tag))
                .map(String::as_str)
                .collect();
            let failed: Vec<&str> = failed.iter().map(|tag| tag.as_str()).collect();
            format!(
                "updated in the registry: {}; NOT updated: {}. Run the same command again to finish",
                if done.is_empty() { "none".to_owned() } else { done.join(", ") },
                failed.join(", ")
            )
        };
        if let Err(error) = push_one(first, "") {
            return Err(error.context(not_updated(&tags.iter().collect::<Vec<_>>())));
        }
        let (first_index, others) = std::thread::scope(|scope| {
            let first_index = scope.spawn(|| verify_one(first));
            let others: Vec<_> = rest
                .iter()
                .map(|tag| {
                    let prefix = format!("[{tag}] ");
                    let push_one = &push_one;
                    let verify_one = &verify_one;
                    // Err: not pushed; Ok(Err): pushed, but the read-back failed.
                    scope.spawn(move || push_one(tag, &prefix).map(|()| verify_one(tag)))
                })
                .collect();
            let others: Vec<_> = others
                .into_iter()
                .map(|handle| handle.join().expect("a push thread panicked"))
                .collect();
            (
                first_index.join().expect("a read-back thread panicked"),
                others,
            )
        });
        let mut failed = Vec::new();
        let mut push_error = None;
        let mut read_back = Vec::new();
        for (tag, result) in rest.iter().zip(others) {
            match result {
                Ok(index) => read_back.push((tag, index)),
                Err(error) => {
                    failed.push(tag);
                    push_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = push_error {
            return Err(error.context(not_updated(&failed)));
        }
        let first_index = first_index?;
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
        Ok(Some(first_index))
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }
}

#[derive(Debug, Clone)]
pub struct MergeOutcome {
    pub built: Vec<Platform>,
    pub failed: Vec<Platform>,
    pub tags: Vec<String>,
    pub held_back: Vec<String>,
    pub remote: Option<registry::RemoteIndex>,
}

/// Reads digest files: one `sha256:<64 hex>` each.
pub fn read_digest_files(
    directory: Option<&std::path::Path>,
    files: &[std::path::PathBuf],
) -> Result<Vec<(String, String)>> {
    let mut paths: Vec<std::path::PathBuf> = files.to_vec();
    let mut problems = Vec::new();
    if let Some(directory) = directory {
        match std::fs::read_dir(directory) {
            Ok(entries) => {
                let mut found: Vec<std::path::PathBuf> = entries
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|path| path.is_file())
                    .collect();
                found.sort();
                paths.extend(found);
            }
            Err(error) => problems.push(format!(
                "cannot read digests directory {}: {error}",
                directory.display()
            )),
        }
    }
    let mut digests = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) if is_digest(text.trim()) => digests.push((path.display().to_string(), text.trim().to_owned())),
            Ok(text) => problems.push(format!(
                "{} does not hold a digest (sha256:<64 hex digits>) but {:?}; use the file push-by-digest wrote",
                path.display(),
                text.chars().take(80).collect::<String>()
            )),
            Err(error) => problems.push(format!("cannot read digest file {}: {error}", path.display())),
        }
    }
    if problems.is_empty() && digests.is_empty() {
        problems.push("no digest files given (--digests-dir DIR or --digest-file PATH): did every build job fail?".into());
    }
    if !problems.is_empty() {
        return Err(crate::BadInput(problems).into());
    }
    digests.sort_by(|a, b| a.1.cmp(&b.1));
    digests.dedup_by(|a, b| a.1 == b.1);
    Ok(digests)
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
    })
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
        let _lock = build::lock_repository(&self.image, "push-image")?;
        let expected = self.platforms.as_ref().map(|list| list.0.as_slice());
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        let outcome = session.push(expected, &runner)?;
        if !runner.dry_run {
            print_summary(&outcome, &session.repository().name());
            report_of_push(&session, &outcome, &[], vec![]).emit("push-image", self.output.json)?;
        }
        Ok(crate::Status::Success)
    }
}

impl flags::BuildAndPush {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let _lock = build::lock_repository(&self.image, "build-and-push")?;
        // Everything the push needs is checked (and the login done) before
        // the build, so a dirty tree, wrong credentials or an unreachable
        // registry cost nothing.
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        // The push starts as soon as the list is verified, from its image
        // ID, while the local tags move; else once they have moved.
        let (built, pushed) = build::run_build_alongside(
            &self.image,
            &self.build,
            &runner,
            Some(|built: &build::Outcome, list_id: &str| {
                session.push_list(built, list_id, &runner)
            }),
        )?;
        let outcome = match pushed {
            Some(pushed) => pushed?,
            None => {
                crate::interrupt::check()?;
                session.push_built(&built, &runner)?
            }
        };
        if !runner.dry_run {
            print_summary(&outcome, &session.repository().name());
            report_of_push(&session, &outcome, &built.failed, built.held_back.clone())
                .emit("build-and-push", self.output.json)?;
        }
        Ok(if built.is_partial() {
            crate::Status::Partial
        } else {
            crate::Status::Success
        })
    }
}

fn report_of_push(
    session: &PushSession,
    outcome: &PushOutcome,
    failed: &[Platform],
    held_back: Vec<String>,
) -> Report {
    Report::of_list(
        session.repository().name(),
        outcome.pushed.clone(),
        held_back,
        outcome.remote.as_ref(),
        failed,
        session.tags().notes.clone(),
    )
}

impl flags::PushByDigest {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let platform = match self.build.platforms.0.as_slice() {
            [platform] => *platform,
            several => {
                return Err(crate::BadInput(vec![format!(
                    "push-by-digest builds one platform, not {}; pass --platform linux/amd64 (or linux/arm64), \
                     and merge the digests with `cargo xtask merge`",
                    platform::join(several)
                )])
                .into())
            }
        };
        if let Some(parent) = self
            .digest_file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            if !parent.is_dir() {
                return Err(crate::BadInput(vec![format!(
                    "the directory of --digest-file {} does not exist; create it first",
                    self.digest_file.display()
                )])
                .into());
            }
        }
        let _lock = build::lock_repository(&self.image, "push-by-digest")?;
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        build::run_build(&self.image, &self.build, &runner)?;
        crate::interrupt::check()?;
        let digest = session.push_by_digest(platform, &runner)?;
        if runner.dry_run {
            return Ok(crate::Status::Success);
        }
        std::fs::write(&self.digest_file, format!("{digest}\n"))
            .with_context(|| format!("cannot write {}", self.digest_file.display()))?;
        eprintln!(
            "\npush-by-digest: {platform} pushed as {}@{digest}\npush-by-digest: digest written to {}",
            session.repository().name(),
            self.digest_file.display()
        );
        Report {
            image: session.repository().name(),
            platforms: [(platform.to_string(), digest)].into(),
            ..Report::default()
        }
        .emit(&format!("push-by-digest {platform}"), self.output.json)?;
        Ok(crate::Status::Success)
    }
}

impl flags::Merge {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let digests = read_digest_files(self.digests_dir.as_deref(), &self.digest_files)?;
        let _lock = build::lock_repository(&self.image, "merge")?;
        let session = PushSession::open(&self.image, &self.push, &runner)?;
        let merged = session.merge(
            &digests,
            &self.platforms.0,
            self.strict,
            self.image.latest_on_partial,
            &runner,
        )?;
        if runner.dry_run {
            return Ok(crate::Status::Success);
        }
        let repository = session.repository().name();
        eprintln!("\nmerge: summary");
        eprintln!("  platforms: {}", platform::join(&merged.built));
        if !merged.failed.is_empty() {
            eprintln!(
                "  MISSING:   {} (its build job failed or pushed nothing)",
                platform::join(&merged.failed)
            );
        }
        for tag in &merged.tags {
            eprintln!("  pushed:    {repository}:{tag} (read back from the registry)");
        }
        for tag in &merged.held_back {
            eprintln!("  skipped:   {tag} (partial result; --latest-on-partial moves it)");
        }
        Report::of_list(
            repository,
            merged.tags.clone(),
            merged.held_back.clone(),
            merged.remote.as_ref(),
            &merged.failed,
            session.tags().notes.clone(),
        )
        .emit("merge", self.output.json)?;
        Ok(if merged.failed.is_empty() {
            crate::Status::Success
        } else {
            crate::Status::Partial
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_files_hold_one_sha256_digest_each() {
        let directory = std::env::temp_dir().join(format!("rc-digests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let good = format!("sha256:{}", "a".repeat(64));
        std::fs::write(directory.join("linux-amd64"), format!("{good}\n")).unwrap();
        let digests = read_digest_files(Some(&directory), &[]).unwrap();
        assert_eq!(digests.len(), 1);
        assert_eq!(digests[0].1, good);

        std::fs::write(directory.join("linux-arm64"), "sha256:XYZ").unwrap();
        let error = format!(
            "{:#}",
            read_digest_files(Some(&directory), &[]).unwrap_err()
        );
        assert!(
            error.contains("linux-arm64 does not hold a digest"),
            "{error}"
        );

        let empty = directory.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let error = format!("{:#}", read_digest_files(Some(&empty), &[]).unwrap_err());
        assert!(error.contains("did every build job fail?"), "{error}");
        std::fs::remove_dir_all(directory).unwrap();
    }
}
