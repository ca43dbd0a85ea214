//! `merge`: the release's last job. The images `push-by-digest` pushed
//! (one per platform, in every registry) become one manifest list, which
//! gets every tag the result earns and is pushed to every registry. The
//! plan (which platform each digest is, which tags) is read from the
//! registry first, so a dry run shows what a real run does.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::{
    engine::podman,
    exec::{taken, Runner, Step},
    flags,
    platform::{self, Platform},
    registry, release,
};

use super::{PushPlan, PushSession, Pushed};

/// What a merge does, worked out from the registry before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// The local list the images are assembled in (removed afterwards).
    pub list: String,
    /// `(platform, repository@digest)`, in the order of `--platform`.
    pub images: Vec<(Platform, String)>,
    pub failed: Vec<Platform>,
    pub held_back: Vec<String>,
    pub push: PushPlan,
}

impl PushSession {
    /// Reads each digest's platform from the (first) registry and decides
    /// the list and its tags; refuses a digest of another platform, or two
    /// of one.
    pub fn plan_merge(
        &self,
        digests: &[(String, String)],
        expected: &[Platform],
        strict: bool,
        latest_on_partial: bool,
        runner: &Runner,
    ) -> Result<MergePlan> {
        let images = self.images_of(digests, expected, runner)?;
        self.merge_plan(images, expected, strict, latest_on_partial)
    }

    /// `(platform, repository@digest)` of each digest, in the order of
    /// `expected`, as the (first) registry answers.
    fn images_of(
        &self,
        digests: &[(String, String)],
        expected: &[Platform],
        runner: &Runner,
    ) -> Result<Vec<(Platform, String)>> {
        let first = &self.targets[0];
        let repository = first.repository.name();
        let mut images: Vec<(Platform, String)> = Vec::new();
        for (source, digest) in digests {
            let remote = format!("{repository}@{digest}");
            let answer = registry::read_back(
                runner,
                &registry::image_platform_command(&first.destination, &remote),
            )
            .with_context(|| {
                format!("cannot read {digest} (from {source}); was it pushed to {repository}?")
            })?;
            let platform = registry::parse_image_platform(&answer)
                .with_context(|| format!("image {digest} (from {source})"))?;
            if images.iter().any(|(seen, _)| *seen == platform) {
                bail!("two digests are images for {platform}; give each platform's digest once");
            }
            if !expected.contains(&platform) {
                bail!(
                    "image {digest} (from {source}) is for {platform}, which is not in --platform {}",
                    platform::join(expected)
                );
            }
            images.push((platform, remote));
        }
        images.sort_by_key(|(platform, _)| expected.iter().position(|wanted| wanted == platform));
        Ok(images)
    }

    /// What a merge of `images` does (pure): the list, the tags it earns.
    pub fn merge_plan(
        &self,
        images: Vec<(Platform, String)>,
        expected: &[Platform],
        strict: bool,
        latest_on_partial: bool,
    ) -> Result<MergePlan> {
        let built: Vec<Platform> = images.iter().map(|(platform, _)| *platform).collect();
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
        let tags = self
            .release
            .tags
            .for_result(failed.is_empty(), latest_on_partial);
        let held_back = self
            .release
            .tags
            .for_result(true, true)
            .into_iter()
            .filter(|tag| !tags.contains(tag))
            .collect();
        let list = self
            .repository()
            .with_tag(&format!("merge-{}", std::process::id()));
        Ok(MergePlan {
            push: PushPlan {
                platforms: built,
                tags,
                skipped: Vec::new(),
                source: Some(list.clone()),
                with_images: false,
            },
            list,
            images,
            failed,
            held_back,
        })
    }

    /// A dry run's merge of builders' images: every platform, by the
    /// digest its builder will push.
    pub fn expected_merge(&self, platforms: &[Platform], strict: bool) -> Result<MergePlan> {
        let repository = self.targets[0].repository.name();
        let images = platforms
            .iter()
            .map(|&platform| {
                (
                    platform,
                    format!("{repository}@<digest of its {platform} image>"),
                )
            })
            .collect();
        self.merge_plan(images, platforms, strict, false)
    }

    /// Walks a merge plan: the list, its entries (checked against the
    /// plan), the pushes; the list is removed whatever happened.
    pub fn merge(&self, plan: &MergePlan, runner: &Runner) -> Result<Pushed> {
        let pushed = Mutex::new(Pushed::default());
        runner.execute(vec![self.merge_step(Arc::new(plan.clone()), &pushed)])?;
        Ok(taken(pushed))
    }

    /// [`merge_steps`](Self::merge_steps), then the list's removal,
    /// whatever happened.
    pub fn merge_step<'a>(&'a self, plan: Arc<MergePlan>, pushed: &'a Mutex<Pushed>) -> Step<'a> {
        let remove = podman::manifest_remove(&plan.list);
        Step::Finally {
            steps: self.merge_steps(plan, pushed),
            always: vec![Step::run_ignoring_failure(remove)],
        }
    }

    /// The list made from the platforms' images in the registry, checked,
    /// and pushed under every tag.
    pub fn merge_steps<'a>(
        &'a self,
        plan: Arc<MergePlan>,
        pushed: &'a Mutex<Pushed>,
    ) -> Vec<Step<'a>> {
        let first = &self.targets[0];
        let mut steps = vec![Step::run(podman::manifest_create(&plan.list))];
        steps.extend(plan.images.iter().map(|(_, remote)| {
            Step::run(registry::manifest_add_remote(
                &first.destination,
                &plan.list,
                remote,
            ))
        }));
        let wanted: Vec<String> = plan
            .push
            .platforms
            .iter()
            .map(Platform::to_string)
            .collect();
        let list = plan.list.clone();
        steps.push(Step::work(
            format!("{list} is checked to hold [{}]", wanted.join(", ")),
            move |runner, _| {
                let present = crate::engine::local_list::read(runner, &list)?;
                let found: Vec<String> = present
                    .manifests
                    .iter()
                    .map(|entry| entry.platform_string().unwrap_or_default())
                    .collect();
                if found != wanted {
                    bail!(
                        "the merged list holds [{}], not [{}] as the registry said",
                        found.join(", "),
                        wanted.join(", ")
                    );
                }
                Ok(())
            },
        ));
        steps.extend(self.push_steps(Arc::new(plan.push.clone()), pushed));
        steps
    }
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

/// Ends a merge (`merge`, or build-and-push with builders): the summary,
/// the report, and the exit status (3 when a platform is missing).
pub fn finish(
    command: &str,
    session: &PushSession,
    plan: &MergePlan,
    pushed: Pushed,
    json: bool,
) -> Result<crate::Status> {
    print_summary(command, session, plan, &pushed);
    super::report_of_push(
        session,
        &plan.push,
        &pushed,
        &plan.failed,
        plan.held_back.clone(),
    )
    .emit(command, json)?;
    pushed.into_result()?;
    Ok(if plan.failed.is_empty() {
        crate::Status::Success
    } else {
        crate::Status::Partial
    })
}

/// The summary of a merge: platforms, missing ones, what each registry has.
pub fn print_summary(command: &str, session: &PushSession, plan: &MergePlan, pushed: &Pushed) {
    eprintln!("\n{command}: summary");
    eprintln!("  platforms: {}", platform::join(&plan.push.platforms));
    session.signing.print_summary(pushed);
    if !plan.failed.is_empty() {
        eprintln!(
            "  MISSING:   {} (its build job failed or pushed nothing)",
            platform::join(&plan.failed)
        );
    }
    for (target, (_, result)) in session.targets.iter().zip(&pushed.results) {
        let repository = target.repository.name();
        match result {
            Ok(_) => {
                for tag in &plan.push.tags {
                    eprintln!("  pushed:    {repository}:{tag} (read back from the registry)");
                }
            }
            Err(error) => eprintln!(
                "  FAILED:    {repository} ({})",
                format!("{error:#}").lines().next().unwrap_or_default()
            ),
        }
    }
    for tag in &plan.held_back {
        eprintln!("  skipped:   {tag} (partial result; --latest-on-partial moves it)");
    }
}

impl flags::Merge {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::of(&self.image);
        let digests = read_digest_files(self.digests_dir.as_deref(), &self.digest_files);
        let problems = digests
            .as_ref()
            .err()
            .map(|error| match error.downcast_ref::<crate::BadInput>() {
                Some(bad) => bad.0.clone(),
                None => vec![format!("{error:#}")],
            })
            .unwrap_or_default();
        let session = PushSession::open(
            &self.image,
            &self.push,
            Some(&self.sign),
            release::Overrides {
                platforms: self.platforms.as_deref(),
                ..release::Overrides::default()
            },
            problems,
            &runner,
        )?;
        let digests = digests?;
        let plan = session.plan_merge(
            &digests,
            &session.release.declared.platforms,
            self.strict,
            self.image.latest_on_partial,
            &runner,
        )?;
        let _lock = session.release.lock(&runner, "merge")?;
        let pushed = session.merge(&plan, &runner)?;
        if !runner.acts() {
            return Ok(crate::Status::Success);
        }
        finish("merge", &session, &plan, pushed, self.output.json)
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
