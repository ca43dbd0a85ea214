//! `push-by-digest`: one platform's release job. Builds that platform,
//! then pushes its image to every registry as `repository@digest`, with no
//! tag; `merge` later gives the platforms one list and the tags.

use anyhow::{bail, Context, Result};

use crate::{
    build,
    engine::local_list,
    exec::Runner,
    flags,
    platform::{self, Platform},
    registry,
    release::labels,
    report::Report,
};

use super::PushSession;

impl PushSession {
    /// Pushes this build's image for `platform` to `repository@digest` in
    /// every registry, with no tag; returns the digest.
    fn push_by_digest(&self, platform: Platform, runner: &Runner) -> Result<String> {
        let primary = self.repository().with_tag(self.release.tags.primary());
        if !self.engine.shares_this_host() {
            return self.push_by_platform_tag(platform, &primary, runner);
        }
        let directory = crate::project::TemporaryDirectory::create("rc-xtask-digest-push")?;
        // The image ID of the platform's entry; a dry run names it.
        let image = if runner.dry_run {
            format!("<image ID of the {platform} entry of {primary}>")
        } else {
            let list = local_list::read(runner, &primary)?;
            let entries = list.entries_for(platform);
            let [entry] = entries.as_slice() else {
                bail!("{primary} has no single {platform} entry; build it with `cargo xtask build-image --platform {platform}`");
            };
            // By image ID: `LIST@DIGEST` finds no image on podman 4.7 and later.
            let revision = self.release.source.revision();
            let [image] = local_list::entry_image_ids(
                runner,
                &primary,
                std::slice::from_ref(&entry.digest),
                Some((labels::REVISION, revision.as_str())),
            )?
            .try_into()
            .expect("one ID per digest");
            image
        };
        // Saved once, in the first registry's format: every registry gets
        // the same bytes, so the same digest.
        let first = &self.targets[0];
        runner.run(&registry::save_for_digest_push(
            &first.destination,
            &image,
            directory.path(),
        ))?;
        let digest = if runner.dry_run {
            "<digest of the saved manifest>".to_owned()
        } else {
            let manifest = std::fs::read(directory.path().join("manifest.json"))
                .context("podman wrote no manifest.json")?;
            registry::digest_of(&manifest)
        };
        self.to_every_registry(platform, |target| {
            let repository = target.repository.name();
            registry::run_with_retries(
                runner,
                &registry::push_by_digest_command(
                    &target.destination,
                    directory.path(),
                    &repository,
                    &digest,
                ),
                self.attempts,
                "",
            )
            .with_context(|| format!("push of {platform} by digest to {repository} failed"))?;
            if runner.dry_run {
                return Ok(digest.clone());
            }
            let remote = format!("{repository}@{digest}");
            let raw = registry::read_back(
                runner,
                &registry::inspect_remote_command(&target.destination, &remote),
            )
            .with_context(|| format!("cannot read {remote} back from the registry"))?;
            if registry::digest_of(raw.as_bytes()) != digest {
                bail!("the registry holds different bytes under {remote}");
            }
            Ok(digest.clone())
        })?;
        Ok(digest)
    }
}

impl PushSession {
    /// Through a remote engine: podman pushes the build's one-platform
    /// list (`list`) with its image under a tag of the platform's own
    /// (`v1.2.3-linux-arm64`), because a remote podman writes a `dir:`
    /// layout on its own side and can push nothing without a tag (nor write
    /// `--digestfile` here: podman 4.3). The image's digest is then read back
    /// from the registry (the entry of what the tag holds), and the
    /// registry serves the image by it.
    fn push_by_platform_tag(
        &self,
        platform: Platform,
        list: &str,
        runner: &Runner,
    ) -> Result<String> {
        let tag = platform_tag(self.release.tags.primary(), platform);
        let digests = self.to_every_registry(platform, |target| {
            let remote = target.repository.with_tag(&tag);
            registry::run_with_retries(
                runner,
                &registry::push_list_command(&target.destination, list, &remote, true),
                self.attempts,
                "",
            )
            .with_context(|| format!("push of {platform} to {remote} failed"))?;
            if runner.dry_run {
                return Ok("<digest read back from the registry>".to_owned());
            }
            let index = registry::verify_remote(runner, &target.destination, &remote, &[platform])?;
            let [(_, digest)] = index.entries.as_slice() else {
                bail!("{remote} holds {} entries, not one", index.entries.len());
            };
            Ok(digest.clone())
        })?;
        let (_, digest) = digests.first().cloned().expect("one registry at least");
        if let Some((registry, other)) = digests.iter().find(|(_, other)| *other != digest) {
            bail!(
                "{registry} got {platform} as {other}, the first registry as {digest}: the \
                 engine compressed it differently; merge from one registry at a time"
            );
        }
        Ok(digest)
    }
}

impl PushSession {
    /// Runs `push` for every registry (a failure does not stop the others)
    /// and returns each registry's digest; fails naming those that failed.
    fn to_every_registry(
        &self,
        platform: Platform,
        push: impl Fn(&super::Target) -> Result<String>,
    ) -> Result<Vec<(String, String)>> {
        let mut digests = Vec::new();
        let mut failed = Vec::new();
        for target in &self.targets {
            crate::interrupt::check()?;
            match push(target) {
                Ok(digest) => digests.push((target.repository.registry.clone(), digest)),
                Err(error) => {
                    eprintln!("push-by-digest: FAILED: {error:#}");
                    failed.push(target.repository.registry.clone());
                }
            }
        }
        if !failed.is_empty() {
            bail!(
                "{platform} was not pushed to {}; run the same command again",
                failed.join(", ")
            );
        }
        Ok(digests)
    }
}

/// The tag a remote engine pushes one platform's image under.
pub fn platform_tag(primary: &str, platform: Platform) -> String {
    format!("{primary}-{}", platform.to_string().replace('/', "-"))
}

impl flags::PushByDigest {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(self.image.dry_run);
        let mut problems = Vec::new();
        build::parse_build_args(&self.build.build_args, &mut problems);
        if let Some(parent) = self
            .digest_file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            if !parent.is_dir() {
                problems.push(format!(
                    "the directory of --digest-file {} does not exist; create it first",
                    self.digest_file.display()
                ));
            }
        }
        let session = PushSession::open_checked(
            &self.image,
            &self.push,
            None,
            build::overrides(&self.build),
            problems,
            &runner,
            |release| match release.declared.platforms.as_slice() {
                [_] => Vec::new(),
                several => vec![format!(
                    "push-by-digest builds one platform, not {}; pass --platform linux/amd64 \
                         (or linux/arm64), and merge the digests with `cargo xtask merge`",
                    platform::join(several)
                )],
            },
        )?;
        let [platform] = session.release.declared.platforms[..] else {
            unreachable!("checked when the session opened")
        };
        let prepared = build::prepare(&self.image, &self.build, &runner, &session.logins())?;
        let _lock = session.release.lock(&runner, "push-by-digest")?;
        build::run_prepared(&prepared, &self.build, &runner, build::NOTHING_ALONGSIDE)?;
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
            images: session
                .targets
                .iter()
                .map(|target| target.repository.name())
                .collect(),
            platforms: [(platform.to_string(), digest)].into(),
            ..Report::default()
        }
        .emit(&format!("push-by-digest {platform}"), self.output.json)?;
        Ok(crate::Status::Success)
    }
}
