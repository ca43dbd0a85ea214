//! `push-by-digest`: one platform's release job. Builds that platform,
//! then pushes its image to every registry as `repository@digest`, with no
//! tag; `merge` later gives the platforms one list and the tags.

use anyhow::{bail, Context, Result};

use crate::{
    build,
    engine::{local_list, podman, Engine},
    exec::Runner,
    flags,
    platform::{self, Platform},
    registry,
    report::Report,
};

use super::PushSession;

/// The image to push, and the commands that push it; the digest is the
/// saved manifest's, so a dry run shows it as a placeholder.
struct DigestPlan {
    /// The image ID of the platform's entry, or a placeholder in a dry run.
    image: String,
    directory: std::path::PathBuf,
}

impl PushSession {
    /// Pushes this build's image for `platform` to `repository@digest` in
    /// every registry, with no tag; returns the digest.
    fn push_by_digest(&self, platform: Platform, runner: &Runner) -> Result<String> {
        let primary = self.repository().with_tag(self.release.tags.primary());
        let directory = crate::project::TemporaryDirectory::create("rc-xtask-digest-push")?;
        let plan = if runner.dry_run {
            DigestPlan {
                image: format!("<image ID of the {platform} entry of {primary}>"),
                directory: directory.path().to_owned(),
            }
        } else {
            let list =
                podman::ManifestList::parse(&runner.read(&podman::manifest_inspect(&primary))?)?;
            let entries = list.entries_for(platform);
            let [entry] = entries.as_slice() else {
                bail!("{primary} has no single {platform} entry; build it with `cargo xtask build-image --platform {platform}`");
            };
            // By image ID: `LIST@DIGEST` finds no image on podman 4.7 and later.
            let [image] =
                local_list::entry_image_ids(runner, &primary, std::slice::from_ref(&entry.digest))?
                    .try_into()
                    .expect("one ID per digest");
            DigestPlan {
                image,
                directory: directory.path().to_owned(),
            }
        };
        // Saved once, in the first registry's format: every registry gets
        // the same bytes, so the same digest.
        let first = &self.targets[0];
        runner.run(&registry::save_for_digest_push(
            &first.destination,
            &plan.image,
            &plan.directory,
        ))?;
        let digest = if runner.dry_run {
            "<digest of the saved manifest>".to_owned()
        } else {
            let manifest = std::fs::read(plan.directory.join("manifest.json"))
                .context("podman wrote no manifest.json")?;
            registry::digest_of(&manifest)
        };
        let mut failed = Vec::new();
        for target in &self.targets {
            crate::interrupt::check()?;
            let repository = target.repository.name();
            let pushed = registry::run_with_retries(
                runner,
                &registry::push_by_digest_command(
                    &target.destination,
                    &plan.directory,
                    &repository,
                    &digest,
                ),
                self.attempts,
                "",
            )
            .with_context(|| format!("push of {platform} by digest to {repository} failed"))
            .and_then(|()| {
                if runner.dry_run {
                    return Ok(());
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
                Ok(())
            });
            if let Err(error) = pushed {
                eprintln!("push-by-digest: FAILED: {error:#}");
                failed.push(target.repository.registry.clone());
            }
        }
        if !failed.is_empty() {
            bail!(
                "{platform} was not pushed to {}; run the same command again",
                failed.join(", ")
            );
        }
        Ok(digest)
    }
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
            build::overrides(&self.build),
            problems,
            &runner,
            |release| {
                let mut problems = match release.declared.platforms.as_slice() {
                    [_] => Vec::new(),
                    several => vec![format!(
                        "push-by-digest builds one platform, not {}; pass --platform linux/amd64 \
                         (or linux/arm64), and merge the digests with `cargo xtask merge`",
                        platform::join(several)
                    )],
                };
                // The image is saved to a `dir:` layout that skopeo reads
                // here; a remote podman writes it on its own side (and its
                // `push --digestfile` writes nothing here: checked on 4.3).
                if Engine::read(&runner).is_ok_and(|engine| !engine.shares_this_host()) {
                    problems.push(
                        "push-by-digest needs podman's storage on this machine, and podman here \
                         is a remote client (CONTAINER_HOST, a connection, podman machine); run \
                         push-by-digest on the engine's machine, or release with `cargo xtask \
                         build-and-push`, which works through a remote engine"
                            .to_owned(),
                    );
                }
                problems
            },
        )?;
        let [platform] = session.release.declared.platforms[..] else {
            unreachable!("checked when the session opened")
        };
        let prepared = build::prepare(&self.image, &self.build, &runner)?;
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
