//! `build-and-push --builder PLATFORM=CONNECTION`: each platform built on a
//! podman of its own (natively where the builder's architecture is the
//! platform's: the plan's build platform is the builder's), pushed by digest
//! from there, and merged here into one list with every tag: what the
//! release workflow does with one job per architecture, from one command.
//!
//! Each builder is driven by this xtask as a child process, `push-by-digest`
//! of one platform, whose podman is the builder (`CONTAINER_HOST` for a URL,
//! `CONTAINER_CONNECTION` for a `podman system connection` name): its
//! checks, fallback, retries and read-back hold there as anywhere, and a
//! builder that fails or cannot be reached is one failed platform (exit 3,
//! `latest` held back), named in the summary. The children work under this
//! run's lock, and with its logins (`REGISTRY_AUTH_FILE`): like every child,
//! they never see the variables that hold the credentials.
//!
//! A builder can also go silent mid-release (its machine gone, its service
//! stopped): podman's client then waits forever. So while a builder's child
//! runs, the builder's podman is asked `podman info` every few seconds, each
//! question bounded; once it has not answered for `--builder-timeout`, the
//! child is given up (SIGTERM, then SIGKILL to it and what it started) and
//! its platform has failed like any other.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::{
    exec::{locked, taken, Branch, Command, Runner, Step},
    flags,
    platform::{self, Platform},
    release::lock,
};

use super::{merge, PushSession};

/// Where one platform is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    pub platform: Platform,
    /// A URL (`ssh://...`, `unix://...`, `tcp://...`) or a connection name.
    pub connection: String,
}

impl Builder {
    /// `linux/arm64=arm-box`.
    pub fn parse(text: &str) -> std::result::Result<Builder, String> {
        let Some((platform, connection)) = text.split_once('=') else {
            return Err(format!(
                "--builder {text:?}: write it as PLATFORM=CONNECTION, e.g. \
                 linux/arm64=arm-box (a `podman system connection` name) or \
                 linux/arm64=ssh://core@arm-box/run/podman/podman.sock"
            ));
        };
        let platform = platform
            .parse::<Platform>()
            .map_err(|error| format!("--builder {text:?}: {error:#}"))?;
        if connection.trim().is_empty() {
            return Err(format!("--builder {text:?}: no connection after '='"));
        }
        Ok(Builder {
            platform,
            connection: connection.trim().to_owned(),
        })
    }

    /// The variable that points podman at this builder, and the one it
    /// must not see (it would win).
    fn variables(&self) -> ((&'static str, &str), &'static str) {
        if self.connection.contains("://") {
            (("CONTAINER_HOST", &self.connection), "CONTAINER_CONNECTION")
        } else {
            (("CONTAINER_CONNECTION", &self.connection), "CONTAINER_HOST")
        }
    }
}

impl Builder {
    /// Asks the builder's podman whether it is there.
    fn probe(&self) -> Command {
        let ((name, value), other) = self.variables();
        crate::engine::podman::architecture()
            .env(name, value)
            .env_remove(other)
    }
}

/// What the watchdog of one builder knows and decides.
#[derive(Default)]
struct Watch {
    /// The child's process IDs, once it runs.
    child: OnceLock<Vec<u32>>,
    /// The child has ended: stop watching.
    ended: AtomicBool,
    /// Why the child was given up.
    lost: Mutex<Option<String>>,
}

impl Watch {
    /// Sleeps `period` unless the child ends first; false if it did.
    fn wait(&self, period: Duration) -> bool {
        let until = Instant::now() + period;
        while Instant::now() < until {
            if self.ended.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        !self.ended.load(Ordering::SeqCst)
    }

    fn lost(&self) -> Option<String> {
        locked(&self.lost).clone()
    }
}

/// How often a builder is asked, for a given timeout: a few times within
/// it, at most every 15 s.
fn probe_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Watches `builder` until its child ends; gives the child up once the
/// builder has not answered for `timeout`.
fn watch(builder: &Builder, timeout: Duration, runner: &Runner, watch: &Watch) {
    let mut answered = Instant::now();
    while watch.wait(probe_period(timeout)) {
        // Each question gets what is left of the timeout (at least 1 s).
        let limit = timeout
            .saturating_sub(answered.elapsed())
            .max(Duration::from_secs(1));
        let error = match runner.read_within(&builder.probe(), limit) {
            Ok(_) => {
                answered = Instant::now();
                continue;
            }
            Err(error) => error,
        };
        if answered.elapsed() < timeout || watch.ended.load(Ordering::SeqCst) {
            continue;
        }
        let why = format!(
            "builder {} has not answered for {} s ({}); given up",
            builder.connection,
            answered.elapsed().as_secs(),
            format!("{error:#}").lines().next().unwrap_or_default()
        );
        eprintln!("\nbuild-and-push: {}: {why}\n", builder.platform);
        *locked(&watch.lost) = Some(why);
        for &pid in watch.child.get().into_iter().flatten() {
            crate::interrupt::give_up(pid);
        }
        return;
    }
}

/// The builders of `texts`, each for one of `platforms`, each platform once.
pub fn parse_all(
    texts: &[String],
    platforms: &[Platform],
    problems: &mut Vec<String>,
) -> Vec<Builder> {
    let mut builders: Vec<Builder> = Vec::new();
    for text in texts.iter().filter(|text| !text.trim().is_empty()) {
        match Builder::parse(text.trim()) {
            Ok(builder)
                if builders
                    .iter()
                    .any(|other| other.platform == builder.platform) =>
            {
                problems.push(format!("--builder: {} has two builders", builder.platform))
            }
            Ok(builder) if !platforms.contains(&builder.platform) => problems.push(format!(
                "--builder {text:?}: {} is not one of the platforms to build ({})",
                builder.platform,
                platform::join(platforms)
            )),
            Ok(builder) => builders.push(builder),
            Err(problem) => problems.push(problem),
        }
    }
    builders
}

/// This command's own arguments, as `push-by-digest` of `platform` writing
/// its digest to `digest_file`: every other flag (names, tags, build and
/// push flags) is the builder's too.
pub fn child_arguments(own: &[String], platform: Platform, digest_file: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut own = own.iter();
    while let Some(argument) = own.next() {
        match argument.as_str() {
            "build-and-push" => arguments.push("push-by-digest".to_owned()),
            "--builder" | "--builder-timeout" | "--platform" | "--signing-key" => {
                own.next();
            }
            // The merge here signs; a builder pushes an image by digest.
            // A dry run shows the child's command as a real run runs it.
            "--json" | "--no-sign" | "--dry-run" | "--reproduce" => {}
            other
                if [
                    "--builder=",
                    "--builder-timeout=",
                    "--platform=",
                    "--signing-key=",
                ]
                .iter()
                .any(|flag| other.starts_with(flag)) => {}
            other => arguments.push(other.to_owned()),
        }
    }
    arguments.extend([
        "--platform".to_owned(),
        platform.to_string(),
        "--digest-file".to_owned(),
        digest_file.to_owned(),
    ]);
    arguments
}

/// `build-and-push` with builders.
pub fn run(flags: &flags::BuildAndPush, runner: &Runner) -> Result<crate::Status> {
    let mut problems = Vec::new();
    crate::build::parse_build_args(&flags.build.build_args, &mut problems);
    if flags.reproduce {
        let engine = crate::engine::Engine::read(runner)?;
        problems.extend(crate::reproduce::problems(engine));
    }
    let builder_texts = flags.builders.clone();
    let mut builders = Vec::new();
    let mut session = PushSession::open_checked(
        &flags.image,
        &flags.push,
        Some(&flags.sign),
        crate::build::overrides(&flags.build),
        problems,
        runner,
        |release| {
            let mut problems = Vec::new();
            builders = parse_all(&builder_texts, &release.declared.platforms, &mut problems);
            problems
        },
    )?;
    session.build_args = flags.build.build_args.clone();
    let platforms = session.release.declared.platforms.clone();
    let _lock = session.release.lock(runner, "build-and-push")?;
    let directory = crate::project::TemporaryDirectory::create("rc-xtask-builders")?;
    let jobs = jobs(&platforms, &builders, &session, directory.path())?;
    for (platform, builder, _, _) in &jobs {
        eprintln!(
            "build-and-push: {platform} on {}",
            builder.map_or("this machine's podman", |builder| builder
                .connection
                .as_str())
        );
    }
    let status = release(&session, &jobs, flags, runner)?;
    if flags.reproduce {
        super::reproduce_after(
            &session,
            &flags.build.build_args,
            runner,
            flags.push.tls_verify,
        )?;
    }
    Ok(status)
}

/// The jobs side by side, then the merge of the digests they wrote (a
/// dry run shows the merge of every platform).
fn release(
    session: &PushSession,
    jobs: &[Job],
    flags: &flags::BuildAndPush,
    runner: &Runner,
) -> Result<crate::Status> {
    let platforms = session.release.declared.platforms.clone();
    let timeout = Duration::from_secs(flags.builder_timeout);
    let results: Vec<Mutex<Option<anyhow::Error>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let merged: Mutex<Option<Arc<merge::MergePlan>>> = Mutex::new(None);
    let pushed = Mutex::new(super::Pushed::default());
    let mut steps = vec![Step::Together(
        jobs.iter()
            .zip(&results)
            .map(|(job, failed)| job_branch(job, timeout, failed))
            .collect(),
    )];
    let expected = Arc::new(session.expected_merge(&platforms, flags.build.strict)?);
    steps.push(Step::then(
        "the digests the builders wrote are merged and pushed (as `merge` does)",
        vec![session.merge_step(expected, &pushed)],
        |runner| {
            let failures = results.iter().map(|failed| locked(failed).take()).collect();
            let digests = digests_written(jobs, failures);
            if digests.is_empty() {
                anyhow::bail!(
                    "no platform was built ({} failed; the output above says why); check each \
                     builder with `podman --connection NAME info` (or CONTAINER_HOST=URL podman info)",
                    platform::join(&platforms)
                );
            }
            let plan = Arc::new(session.plan_merge(
                &digests,
                &platforms,
                flags.build.strict,
                flags.image.latest_on_partial,
                runner,
            )?);
            *locked(&merged) = Some(plan.clone());
            Ok(vec![session.merge_step(plan, &pushed)])
        },
    ));
    runner.execute(steps)?;
    let plan = taken(merged);
    let Some(plan) = plan else {
        return Ok(crate::Status::Success);
    };
    let pushed = taken(pushed);
    merge::finish("build-and-push", session, &plan, pushed, flags.output.json)
}

/// One platform's job beside the others: its child, its builder watched
/// while the child runs (given up after `timeout` of silence); a job that
/// fails is recorded in `failed`, and the others go on.
fn job_branch<'a>(
    job: &'a Job<'a>,
    timeout: Duration,
    failed: &'a Mutex<Option<anyhow::Error>>,
) -> Branch<'a> {
    let (platform, builder, _, command) = job;
    Branch {
        name: platform.to_string(),
        steps: vec![Step::fallback(
            vec![Step::run_with(
                command.clone(),
                move |runner, command, prefix| {
                    let watched = Watch::default();
                    std::thread::scope(|scope| {
                        if let Some(builder) = builder {
                            let watched = &watched;
                            scope.spawn(move || watch(builder, timeout, runner, watched));
                        }
                        let result = runner.run_prefixed_observed(command, prefix, |pids| {
                            let _ = watched.child.set(pids.to_vec());
                        });
                        watched.ended.store(true, Ordering::SeqCst);
                        match watched.lost() {
                            Some(why) => Err(anyhow::anyhow!(why)),
                            None => result,
                        }
                    })
                },
            )],
            format!("{platform} is left out of the merge"),
            move |error| {
                *locked(failed) = Some(error);
                Ok(())
            },
            Vec::new(),
        )],
    }
}

/// A platform's job: where it builds (`None`: this machine's podman), the
/// file its child writes the digest to, and the child's command.
type Job<'a> = (Platform, Option<&'a Builder>, String, Command);

/// Every platform's job: this xtask again, for that platform alone, on its
/// builder or on this machine's podman, with this run's logins.
fn jobs<'a>(
    platforms: &[Platform],
    builders: &'a [Builder],
    session: &PushSession,
    directory: &std::path::Path,
) -> Result<Vec<Job<'a>>> {
    let program = std::env::current_exe().context("cannot find this xtask's own program")?;
    let own: Vec<String> = std::env::args().skip(1).collect();
    Ok(platforms
        .iter()
        .map(|&platform| {
            let builder = builders.iter().find(|builder| builder.platform == platform);
            let file = directory
                .join(platform.to_string().replace('/', "-"))
                .to_string_lossy()
                .into_owned();
            let mut command = Command::new(program.to_string_lossy())
                .args(child_arguments(&own, platform, &file))
                .env(lock::HELD_BY_PARENT, std::process::id().to_string());
            if let Some(builder) = builder {
                let ((name, value), other) = builder.variables();
                command = command.env(name, value).env_remove(other);
            }
            // The children push with this run's logins (podman's and
            // skopeo's own variable): the credentials themselves stay here.
            if let Some(authfile) = session
                .targets
                .iter()
                .find_map(|target| target.destination.authfile.as_ref())
            {
                command = command.env("REGISTRY_AUTH_FILE", authfile.to_string_lossy());
            }
            (platform, builder, file, command)
        })
        .collect())
}

/// The digest each job that went through wrote, named with its platform and
/// where it was built; a failed one is said and left out.
fn digests_written(jobs: &[Job], failures: Vec<Option<anyhow::Error>>) -> Vec<(String, String)> {
    let mut digests = Vec::new();
    for ((platform, builder, file, _), failure) in jobs.iter().zip(failures) {
        let on = builder.map_or("this machine's podman".to_owned(), |builder| {
            format!("builder {}", builder.connection)
        });
        let digest = failure.map_or(Ok(()), Err).and_then(|()| {
            std::fs::read_to_string(file)
                .with_context(|| format!("{on} wrote no digest"))
                .map(|text| text.trim().to_owned())
        });
        match digest {
            Ok(digest) => digests.push((format!("{platform} ({on})"), digest)),
            Err(error) => eprintln!(
                "\nbuild-and-push: FAILED: {platform} on {on}: {}\n",
                format!("{error:#}").lines().next().unwrap_or_default()
            ),
        }
    }
    digests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_is_a_platform_and_a_connection() {
        let builder =
            Builder::parse("linux/arm64=ssh://core@arm-box/run/podman/podman.sock").unwrap();
        assert_eq!(builder.platform, Platform::LINUX_ARM64);
        assert_eq!(builder.variables().0 .0, "CONTAINER_HOST");
        let named = Builder::parse("linux/amd64=x86-box").unwrap();
        assert_eq!(
            named.variables(),
            (("CONTAINER_CONNECTION", "x86-box"), "CONTAINER_HOST")
        );
        assert!(Builder::parse("linux/arm64")
            .unwrap_err()
            .contains("PLATFORM=CONNECTION"));
        assert!(Builder::parse("linux/s390x=box").is_err());
        let mut problems = Vec::new();
        let both = [Platform::LINUX_AMD64, Platform::LINUX_ARM64];
        let builders = parse_all(
            &[
                "linux/arm64=a".into(),
                "linux/arm64=b".into(),
                "linux/amd64=c".into(),
            ],
            &both,
            &mut problems,
        );
        assert_eq!(builders.len(), 2);
        assert!(problems[0].contains("two builders"), "{problems:?}");
        let mut problems = Vec::new();
        parse_all(
            &["linux/arm64=a".into()],
            &[Platform::LINUX_AMD64],
            &mut problems,
        );
        assert!(
            problems[0].contains("not one of the platforms"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_builder_is_asked_a_few_times_within_its_timeout() {
        assert_eq!(
            probe_period(Duration::from_secs(120)),
            Duration::from_secs(15)
        );
        assert_eq!(
            probe_period(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(probe_period(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn a_builder_runs_this_command_as_push_by_digest_of_its_platform() {
        let own: Vec<String> = [
            "build-and-push",
            "--builder",
            "linux/arm64=a",
            "--builder=linux/amd64=b",
            "--platform",
            "linux/amd64,linux/arm64",
            "--registry",
            "127.0.0.1:5000",
            "--json",
            "--dry-run",
            "--reproduce",
            "--builder-timeout",
            "30",
            "--builder-timeout=40",
            "--tag",
            "v1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            child_arguments(&own, Platform::LINUX_ARM64, "/t/linux-arm64"),
            [
                "push-by-digest",
                "--registry",
                "127.0.0.1:5000",
                "--tag",
                "v1",
                "--platform",
                "linux/arm64",
                "--digest-file",
                "/t/linux-arm64"
            ]
        );
    }
}
