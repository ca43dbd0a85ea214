//! `push-by-digest`: one platform's release job. Builds that platform,
//! then pushes its image to every registry as `repository@digest`, with no
//! tag; `merge` later gives the platforms one list and the tags.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context, Result};

use crate::{
    build,
    engine::local_list,
    exec::{locked, taken, Runner, Step},
    flags,
    platform::{self, Platform},
    registry,
    release::labels,
    report::Report,
};

use super::PushSession;

/// A dry run's stand-in for what only the real run reads.
const UNKNOWN_DIGEST: &str = "<digest of the saved manifest>";

impl PushSession {
    /// The steps that push this build's image for `platform` to
    /// `repository@digest` in every registry, with no tag (saved into
    /// `directory` first); the digest goes to `digest`.
    fn push_by_digest_steps<'a>(
        &'a self,
        platform: Platform,
        directory: &'a Path,
        digest: &'a Mutex<Option<String>>,
    ) -> Vec<Step<'a>> {
        let primary = self.repository().with_tag(self.release.tags.primary());
        if !self.engine.shares_this_host() {
            return self.push_by_platform_tag(platform, primary, digest);
        }
        let unknown = format!("<image ID of the {platform} entry of {primary}>");
        vec![Step::then(
            format!("the image ID of the {platform} entry of {primary} is read"),
            self.save_and_push(platform, unknown, directory, digest),
            move |runner| {
                let image = self.entry_image(runner, platform, &primary)?;
                Ok(self.save_and_push(platform, image, directory, digest))
            },
        )]
    }

    /// The image ID of the platform's entry of the local list `primary`.
    fn entry_image(&self, runner: &Runner, platform: Platform, primary: &str) -> Result<String> {
        let list = local_list::read(runner, primary)?;
        let entries = list.entries_for(platform);
        let [entry] = entries.as_slice() else {
            bail!("{primary} has no single {platform} entry; build it with `cargo xtask build-image --platform {platform}`");
        };
        // By image ID: `LIST@DIGEST` finds no image on podman 4.7 and later.
        let revision = self.release.source.revision();
        let [image] = local_list::entry_image_ids(
            runner,
            primary,
            std::slice::from_ref(&entry.digest),
            Some((labels::REVISION, revision.as_str())),
        )?
        .try_into()
        .expect("one ID per digest");
        Ok(image)
    }

    /// Saved once, in the first registry's format: every registry gets the
    /// same bytes, so the same digest.
    fn save_and_push<'a>(
        &'a self,
        platform: Platform,
        image: String,
        directory: &'a Path,
        digest: &'a Mutex<Option<String>>,
    ) -> Vec<Step<'a>> {
        let first = &self.targets[0];
        vec![
            Step::run(registry::save_for_digest_push(
                &first.destination,
                &image,
                directory,
            )),
            Step::then(
                "the digest of the saved manifest is read",
                self.push_saved(platform, UNKNOWN_DIGEST.to_owned(), directory),
                move |_| {
                    let manifest = std::fs::read(directory.join("manifest.json"))
                        .context("podman wrote no manifest.json")?;
                    let read = registry::digest_of(&manifest);
                    *locked(digest) = Some(read.clone());
                    Ok(self.push_saved(platform, read, directory))
                },
            ),
        ]
    }

    /// The saved image to every registry by digest, each read back.
    fn push_saved<'a>(
        &'a self,
        platform: Platform,
        digest: String,
        directory: &'a Path,
    ) -> Vec<Step<'a>> {
        self.to_every_registry(platform, |target| {
            let repository = target.repository.name();
            let remote = format!("{repository}@{digest}");
            let expected = digest.clone();
            vec![
                Step::run_with(
                    registry::push_by_digest_command(
                        &target.destination,
                        directory,
                        &repository,
                        &digest,
                    ),
                    move |runner, command, prefix| {
                        registry::run_with_retries(runner, command, self.attempts, prefix)
                            .with_context(|| {
                                format!("push of {platform} by digest to {repository} failed")
                            })
                    },
                ),
                Step::work(
                    format!("{remote} is read back: the same bytes"),
                    move |runner, _| {
                        let raw = registry::read_back(
                            runner,
                            &registry::inspect_remote_command(&target.destination, &remote),
                        )
                        .with_context(|| format!("cannot read {remote} back from the registry"))?;
                        if registry::digest_of(raw.as_bytes()) != expected {
                            bail!("the registry holds different bytes under {remote}");
                        }
                        Ok(())
                    },
                ),
            ]
        })
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
    fn push_by_platform_tag<'a>(
        &'a self,
        platform: Platform,
        list: String,
        digest: &'a Mutex<Option<String>>,
    ) -> Vec<Step<'a>> {
        let tag = platform_tag(self.release.tags.primary(), platform);
        let digests = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let mut steps = self.to_every_registry(platform, |target| {
            let remote = target.repository.with_tag(&tag);
            let read = digests.clone();
            vec![
                Step::run_with(
                    registry::push_list_command(&target.destination, &list, &remote, true),
                    {
                        let remote = remote.clone();
                        move |runner, command, prefix| {
                            registry::run_with_retries(runner, command, self.attempts, prefix)
                                .with_context(|| format!("push of {platform} to {remote} failed"))
                        }
                    },
                ),
                Step::work(
                    format!("{remote} is read back: its {platform} digest"),
                    move |runner, _| {
                        let index = registry::verify_remote(
                            runner,
                            &target.destination,
                            &remote,
                            &[platform],
                        )?;
                        let [(_, digest)] = index.entries.as_slice() else {
                            bail!("{remote} holds {} entries, not one", index.entries.len());
                        };
                        locked(&read).push((target.repository.registry.clone(), digest.clone()));
                        Ok(())
                    },
                ),
            ]
        });
        steps.push(Step::work(
            "every registry got the same digest",
            move |_, _| {
                let digests = locked(&digests);
                let (_, first) = digests.first().cloned().expect("one registry at least");
                if let Some((registry, other)) = digests.iter().find(|(_, other)| *other != first) {
                    bail!(
                        "{registry} got {platform} as {other}, the first registry as {first}: the \
                     engine compressed it differently; merge from one registry at a time"
                    );
                }
                *locked(digest) = Some(first);
                Ok(())
            },
        ));
        steps
    }
}

impl PushSession {
    /// `push`'s steps for every registry (a failure does not stop the
    /// others), then a step that fails naming those that failed.
    fn to_every_registry<'a>(
        &'a self,
        platform: Platform,
        push: impl Fn(&'a super::Target) -> Vec<Step<'a>>,
    ) -> Vec<Step<'a>> {
        let failed = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut steps: Vec<Step<'a>> = self
            .targets
            .iter()
            .map(|target| {
                let failed = failed.clone();
                let registry = target.repository.registry.clone();
                Step::fallback(
                    push(target),
                    format!("{registry} is named as failed; the other registries still get it"),
                    move |error| {
                        eprintln!("push-by-digest: FAILED: {error:#}");
                        locked(&failed).push(registry);
                        Ok(())
                    },
                    Vec::new(),
                )
            })
            .collect();
        steps.push(Step::work("every registry has it", move |_, _| {
            let failed = locked(&failed);
            if !failed.is_empty() {
                bail!(
                    "{platform} was not pushed to {}; run the same command again",
                    failed.join(", ")
                );
            }
            Ok(())
        }));
        steps
    }
}

/// The tag a remote engine pushes one platform's image under.
pub fn platform_tag(primary: &str, platform: Platform) -> String {
    format!("{primary}-{}", platform.to_string().replace('/', "-"))
}

impl flags::PushByDigest {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self.image);
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
        build::run_prepared(&prepared, &self.build, &runner, None)?;
        crate::interrupt::check()?;
        let digest = Mutex::new(None);
        let directory = crate::project::TemporaryDirectory::create("rc-xtask-digest-push")?;
        let mut steps = session.push_by_digest_steps(platform, directory.path(), &digest);
        let file = &self.digest_file;
        steps.push(Step::work(
            format!("the digest is written to {}", file.display()),
            |_, _| {
                let digest = locked(&digest).clone().unwrap_or_default();
                std::fs::write(file, format!("{digest}\n"))
                    .with_context(|| format!("cannot write {}", file.display()))
            },
        ));
        runner.execute(steps)?;
        let Some(digest) = taken(digest) else {
            return Ok(crate::Status::Success);
        };
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
