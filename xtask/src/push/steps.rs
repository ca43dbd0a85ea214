//! A push plan as steps: every registry in turn, each with every tag, each
//! tag read back, the list signed. A registry that fails does not stop the
//! others; [`Pushed`] says which did.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::{
    exec::{locked, taken, Branch, Runner, Step},
    registry::{self, RemoteIndex},
    sign::PushedRelease,
};

use super::{not_updated, one_list, PushPlan, PushSession, Pushed, Target};

/// What one registry's steps found, while they run.
#[derive(Default)]
struct Found {
    /// The first tag's list, read back.
    first: Option<Result<RemoteIndex>>,
    /// Every other tag's, read back.
    others: Vec<(String, Result<RemoteIndex>)>,
    /// Tags not pushed, with why.
    failed: Vec<(String, anyhow::Error)>,
}

/// A dry run's stand-in for what a registry answers.
fn unknown_index(plan: &PushPlan) -> RemoteIndex {
    RemoteIndex {
        digest: "'<digest of the pushed list>'".to_owned(),
        entries: plan
            .platforms
            .iter()
            .map(|platform| {
                (
                    platform.to_string(),
                    format!("'<digest of its {platform} image>'"),
                )
            })
            .collect(),
    }
}

impl PushSession {
    /// Runs the plan's steps (a dry run prints them).
    pub fn execute(&self, plan: &PushPlan, runner: &Runner) -> Result<Pushed> {
        let pushed = Mutex::new(Pushed::default());
        runner.execute(self.push_steps(Arc::new(plan.clone()), &pushed))?;
        Ok(taken(pushed))
    }

    /// The plan's steps; each registry's result goes to `pushed`.
    pub fn push_steps<'a>(
        &'a self,
        plan: Arc<PushPlan>,
        pushed: &'a Mutex<Pushed>,
    ) -> Vec<Step<'a>> {
        let several = self.targets.len() > 1;
        self.targets
            .iter()
            .map(|target| {
                let registry = target.repository.registry.clone();
                Step::fallback(
                    self.target_steps(target, plan.clone(), pushed),
                    format!("{registry} is named as failed; the other registries still get it"),
                    move |error| {
                        if several {
                            eprintln!(
                                "push: FAILED to push to {registry}: {}",
                                crate::exec::first_line(&format!("{error:#}"))
                            );
                        }
                        locked(pushed).results.push((registry, Err(error)));
                        Ok(())
                    },
                    Vec::new(),
                )
            })
            .collect()
    }

    /// One registry: the first tag (it uploads what the registry lacks),
    /// then the others side by side (they need only their manifests) while
    /// the first is read back, each then read back too; then the list is
    /// signed. A failure says which tags the registry has and which not.
    fn target_steps<'a>(
        &'a self,
        target: &'a Target,
        plan: Arc<PushPlan>,
        pushed: &'a Mutex<Pushed>,
    ) -> Vec<Step<'a>> {
        let registry = target.repository.registry.clone();
        let Some(first) = plan.tags.first().cloned() else {
            return vec![Step::work("nothing to push", move |_, _| {
                locked(pushed).results.push((registry, Ok(None)));
                Ok(())
            })];
        };
        let found = Arc::new(Mutex::new(Found::default()));
        let all: Vec<String> = plan.tags.clone();
        let first_push = {
            let tag = first.clone();
            Step::run_with(
                self.push_command(target, &plan, &first),
                move |runner, command, prefix| {
                    self.push_tag(runner, command, prefix, target, &tag)
                        .map_err(|error| {
                            let every: Vec<&String> = all.iter().collect();
                            let context = not_updated(target, &all, &every, &error);
                            error.context(context)
                        })
                },
            )
        };
        let mut branches = vec![Branch {
            name: first.clone(),
            steps: vec![self.read_back(target, &plan, &first, found.clone(), true)],
        }];
        for tag in plan.tags.iter().skip(1) {
            let (recorded, tag_name) = (found.clone(), tag.clone());
            branches.push(Branch {
                name: tag.clone(),
                steps: vec![Step::fallback(
                    vec![
                        Step::run_with(
                            self.push_command(target, &plan, tag),
                            move |runner, command, prefix| {
                                self.push_tag(runner, command, prefix, target, &tag_name)
                            },
                        ),
                        self.read_back(target, &plan, tag, found.clone(), false),
                    ],
                    "named as not updated",
                    {
                        let tag = tag.clone();
                        move |error| {
                            locked(&recorded).failed.push((tag, error));
                            Ok(())
                        }
                    },
                    Vec::new(),
                )],
            });
        }
        vec![
            first_push,
            Step::Together(branches),
            self.sign_after(target, plan, found, pushed),
        ]
    }

    /// Pushes one tag, with retries.
    fn push_tag(
        &self,
        runner: &Runner,
        command: &crate::exec::Command,
        prefix: &str,
        target: &Target,
        tag: &str,
    ) -> Result<()> {
        registry::run_with_retries(runner, command, self.attempts, prefix)
            .with_context(|| format!("push of {} failed", target.repository.with_tag(tag)))
    }

    /// Reads `tag` back: the registry must hold the plan's platforms
    /// under it, as one list.
    fn read_back<'a>(
        &'a self,
        target: &'a Target,
        plan: &PushPlan,
        tag: &str,
        found: Arc<Mutex<Found>>,
        first: bool,
    ) -> Step<'a> {
        let remote = target.repository.with_tag(tag);
        let (platforms, tag) = (plan.platforms.clone(), tag.to_owned());
        Step::work(
            format!(
                "{remote} is read back: one list of {}",
                crate::platform::join(&platforms)
            ),
            move |runner, _| {
                let index =
                    registry::verify_remote(runner, &target.destination, &remote, &platforms);
                let mut found = locked(&found);
                if first {
                    found.first = Some(index);
                } else {
                    found.others.push((tag, index));
                }
                Ok(())
            },
        )
    }

    /// Once every tag was pushed and read back: the one list they hold,
    /// signed; then the registry counts as having the release.
    fn sign_after<'a>(
        &'a self,
        target: &'a Target,
        plan: Arc<PushPlan>,
        found: Arc<Mutex<Found>>,
        pushed: &'a Mutex<Pushed>,
    ) -> Step<'a> {
        let expected = self
            .sign_steps(target, unknown_index(&plan))
            .unwrap_or_default();
        Step::then(
            "every tag holds the same list, which is signed",
            expected,
            move |_| {
                let index = {
                    let mut found = locked(&found);
                    if !found.failed.is_empty() {
                        let failed: Vec<(String, anyhow::Error)> =
                            std::mem::take(&mut found.failed);
                        let names: Vec<&String> = failed.iter().map(|(tag, _)| tag).collect();
                        let context = not_updated(target, &plan.tags, &names, &failed[0].1);
                        let (_, error) = failed.into_iter().next().expect("one failed at least");
                        return Err(error.context(context));
                    }
                    let first = found.first.take().expect("the first tag was read back")?;
                    let others = std::mem::take(&mut found.others);
                    one_list(&first_of(&plan), first, others)?
                };
                let mut steps = self.sign_steps(target, index.clone())?;
                let registry = target.repository.registry.clone();
                steps.push(Step::work("the registry has the release", move |_, _| {
                    locked(pushed).results.push((registry, Ok(Some(index))));
                    Ok(())
                }));
                Ok(steps)
            },
        )
    }

    fn sign_steps<'a>(&'a self, target: &'a Target, index: RemoteIndex) -> Result<Vec<Step<'a>>> {
        self.signing.steps(PushedRelease {
            engine: self.engine,
            release: &self.release,
            build_args: &self.build_args,
            destination: &target.destination,
            repository: target.repository.name(),
            index,
        })
    }
}

fn first_of(plan: &PushPlan) -> String {
    plan.tags.first().cloned().unwrap_or_default()
}
