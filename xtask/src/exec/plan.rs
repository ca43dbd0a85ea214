//! Plans as steps, and the one executor that runs them.
//!
//! A command reads what it needs (flags, metadata, git, the engine, local
//! lists, the registry), then a pure planner turns that into [`Step`]s: the
//! commands with effects, in order, what runs side by side, the fallback as
//! an explicit alternative, and the steps decided by what earlier steps
//! made (a digest, a list's entries). [`Runner::execute`] runs them, or, in
//! a dry run, prints them: the same plan either way, so a dry run shows what
//! the real run then does, in the order it does it.
//!
//! The dry run's lines (stdout): a command as a shell would run it,
//! `[name] ` before the commands of a branch that runs beside others, and
//! `# ` before what is not a command:
//!
//! ```text
//! podman build --platform linux/amd64,linux/arm64 --manifest ... .
//! # if that fails, instead: each platform on its own
//! [linux/amd64] podman build --platform linux/amd64 ...
//! [linux/amd64] # if that fails: linux/amd64 is left out
//! [linux/arm64] podman build --platform linux/arm64 ...
//! [linux/arm64] # if that fails: linux/arm64 is left out
//! # end of the alternative
//! # then: the list is checked to hold linux/amd64,linux/arm64 ...
//! # then: the tags move
//! # side by side:
//! [tags] podman tag ...
//! [push] podman manifest push ...
//! ```
//!
//! An alternative with steps of its own is bracketed (`# if that fails,
//! instead:` ... `# end of the alternative`); `# then:` is followed by the
//! steps planned for when everything before went as planned; `# whatever
//! happened:` by what runs after steps even when they failed.
//!
//! A real run echoes each command as it starts (`[name] $ command`, to
//! stderr), so the two can be compared line by line.

use std::sync::{Mutex, MutexGuard};

use anyhow::Result;

use super::{Command, Runner};
use crate::interrupt;

/// A value the steps of a plan share: a step that panicked leaves it as it
/// was, and the plan's own error says what failed.
pub fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shared value, once the plan ran.
pub fn taken<T>(mutex: Mutex<T>) -> T {
    mutex
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one command of a plan in a real run: `(runner, command, prefix)`.
/// A step without one runs its command with [`Runner::run_prefixed`].
pub type Act<'a> = Box<dyn FnOnce(&Runner, &Command, &str) -> Result<()> + Send + 'a>;

/// Work of this program in a real run (a check, a file written), given the
/// branch's prefix.
pub type Work<'a> = Box<dyn FnOnce(&Runner, &str) -> Result<()> + Send + 'a>;

/// Plans the steps that follow from what the earlier steps made.
pub type Planner<'a> = Box<dyn FnOnce(&Runner) -> Result<Vec<Step<'a>>> + Send + 'a>;

/// Told why an attempt failed, before its alternative runs.
pub type Warn<'a> = Box<dyn FnOnce(anyhow::Error) -> Result<()> + Send + 'a>;

/// One step of a plan.
pub enum Step<'a> {
    /// A command with effects. `act` runs it in a real run when it needs
    /// more than running once (retries, a fallback inside one build, a
    /// watchdog); it must echo `command` (the runner's `run*` do).
    Run {
        command: Command,
        act: Option<Act<'a>>,
    },
    /// This program's own work (reading a list back and checking it,
    /// writing a file): a dry run says `# {says}`, a real run does it.
    Do { says: String, work: Work<'a> },
    /// Steps in order, their output and echo prefixed `[name] ` (one
    /// platform's build among others).
    Named(Branch<'a>),
    /// Steps an interrupt does not split: a Ctrl-C waits until they ran
    /// (the tags of one list move together).
    Uninterrupted(Vec<Step<'a>>),
    /// Branches side by side, each in order; every branch runs to its end
    /// (or its first failure), and the first failure, in branch order, is
    /// the step's.
    Together(Vec<Branch<'a>>),
    /// `attempt`; when it fails (and no interrupt came), `warn` is told why
    /// and `otherwise` runs instead. `warn` returning the error stops the
    /// plan; an empty `otherwise` with a `warn` that records the failure
    /// makes a step whose failure the plan survives.
    Fallback {
        attempt: Vec<Step<'a>>,
        says: String,
        warn: Warn<'a>,
        otherwise: Vec<Step<'a>>,
    },
    /// `steps`, then `always` whatever happened to them (a list the steps
    /// use removed); the first failure is the step's.
    Finally {
        steps: Vec<Step<'a>>,
        always: Vec<Step<'a>>,
    },
    /// Steps that depend on what the earlier ones made. A dry run says
    /// `# then: {says}` and prints `expected`, the steps planned when
    /// everything before went as planned; a real run runs what `plan`
    /// returns.
    Then {
        says: String,
        expected: Vec<Step<'a>>,
        plan: Planner<'a>,
    },
}

/// Steps that run beside others, their output and echo prefixed `[name] `.
pub struct Branch<'a> {
    pub name: String,
    pub steps: Vec<Step<'a>>,
}

impl<'a> Step<'a> {
    /// A command with effects, run once.
    pub fn run(command: Command) -> Step<'a> {
        Step::Run { command, act: None }
    }

    /// A command with effects that `act` runs (and echoes).
    pub fn run_with(
        command: Command,
        act: impl FnOnce(&Runner, &Command, &str) -> Result<()> + Send + 'a,
    ) -> Step<'a> {
        Step::Run {
            command,
            act: Some(Box::new(act)),
        }
    }

    /// A command whose failure does not matter (removing what may not be
    /// there): echoed, its output and status ignored.
    pub fn run_ignoring_failure(command: Command) -> Step<'a> {
        Step::run_with(command, |runner, command, prefix| {
            runner.run_quietly_prefixed(command, prefix).map(|_| ())
        })
    }

    /// `steps`, prefixed `[name] `.
    pub fn named(name: impl Into<String>, steps: Vec<Step<'a>>) -> Step<'a> {
        Step::Named(Branch {
            name: name.into(),
            steps,
        })
    }

    pub fn work(
        says: impl Into<String>,
        work: impl FnOnce(&Runner, &str) -> Result<()> + Send + 'a,
    ) -> Step<'a> {
        Step::Do {
            says: says.into(),
            work: Box::new(work),
        }
    }

    pub fn then(
        says: impl Into<String>,
        expected: Vec<Step<'a>>,
        plan: impl FnOnce(&Runner) -> Result<Vec<Step<'a>>> + Send + 'a,
    ) -> Step<'a> {
        Step::Then {
            says: says.into(),
            expected,
            plan: Box::new(plan),
        }
    }

    pub fn fallback(
        attempt: Vec<Step<'a>>,
        says: impl Into<String>,
        warn: impl FnOnce(anyhow::Error) -> Result<()> + Send + 'a,
        otherwise: Vec<Step<'a>>,
    ) -> Step<'a> {
        Step::Fallback {
            attempt,
            says: says.into(),
            warn: Box::new(warn),
            otherwise,
        }
    }
}

impl Runner {
    /// Runs `steps` in order, stopping at the first failure; a dry run
    /// prints them instead (see the module's documentation).
    pub fn execute(&self, steps: Vec<Step<'_>>) -> Result<()> {
        self.execute_prefixed(steps, "")
    }

    fn execute_prefixed(&self, steps: Vec<Step<'_>>, prefix: &str) -> Result<()> {
        if self.dry_run {
            shown(steps, prefix)
                .iter()
                .for_each(|line| println!("{line}"));
            return Ok(());
        }
        for step in steps {
            interrupt::check()?;
            self.execute_step(step, prefix)?;
        }
        Ok(())
    }

    fn execute_step(&self, step: Step<'_>, prefix: &str) -> Result<()> {
        match step {
            Step::Run { command, act: None } => self.run_prefixed(&command, prefix),
            Step::Run {
                command,
                act: Some(act),
            } => act(self, &command, prefix),
            Step::Do { work, .. } => work(self, prefix),
            Step::Named(branch) => {
                self.execute_prefixed(branch.steps, &format!("[{}] ", branch.name))
            }
            Step::Uninterrupted(steps) => {
                let _deferred = interrupt::Deferred::new();
                steps
                    .into_iter()
                    .try_for_each(|step| self.execute_step(step, prefix))
            }
            Step::Together(branches) => self.together(branches),
            Step::Fallback {
                attempt,
                warn,
                otherwise,
                ..
            } => match self.execute_prefixed(attempt, prefix) {
                Ok(()) => Ok(()),
                Err(error) if interrupt::received().is_some() => Err(error),
                Err(error) => {
                    warn(error)?;
                    self.execute_prefixed(otherwise, prefix)
                }
            },
            Step::Finally { steps, always } => {
                let ran = self.execute_prefixed(steps, prefix);
                let cleaned = self.execute_prefixed(always, prefix);
                ran.and(cleaned)
            }
            Step::Then { plan, .. } => {
                let steps = plan(self)?;
                self.execute_prefixed(steps, prefix)
            }
        }
    }

    fn together(&self, branches: Vec<Branch<'_>>) -> Result<()> {
        let results: Vec<Mutex<Option<Result<()>>>> =
            branches.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for (branch, result) in branches.into_iter().zip(&results) {
                scope.spawn(move || {
                    let prefix = format!("[{}] ", branch.name);
                    let outcome = self.execute_prefixed(branch.steps, &prefix);
                    *locked(result) = Some(outcome);
                });
            }
        });
        for result in results {
            match taken(result) {
                Some(Ok(())) => {}
                Some(Err(error)) => return Err(error),
                None => anyhow::bail!("a branch of the plan panicked"),
            }
        }
        Ok(())
    }
}

/// A dry run's lines for `steps` (see the module's documentation).
pub fn shown(steps: Vec<Step<'_>>, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for step in steps {
        show(step, prefix, &mut lines);
    }
    lines
}

fn show(step: Step<'_>, prefix: &str, lines: &mut Vec<String>) {
    let all = |steps: Vec<Step<'_>>, prefix: &str, lines: &mut Vec<String>| {
        lines.extend(shown(steps, prefix));
    };
    match step {
        Step::Run { command, .. } => lines.push(format!("{prefix}{command}")),
        Step::Do { says, .. } => lines.push(format!("{prefix}# {says}")),
        Step::Named(branch) => all(branch.steps, &format!("[{}] ", branch.name), lines),
        Step::Uninterrupted(steps) => all(steps, prefix, lines),
        Step::Together(branches) => {
            lines.push(format!("{prefix}# side by side:"));
            for branch in branches {
                all(branch.steps, &format!("[{}] ", branch.name), lines);
            }
        }
        Step::Fallback {
            attempt,
            says,
            otherwise,
            ..
        } => {
            all(attempt, prefix, lines);
            if otherwise.is_empty() {
                lines.push(format!("{prefix}# if that fails: {says}"));
            } else {
                lines.push(format!("{prefix}# if that fails, instead: {says}"));
                all(otherwise, prefix, lines);
                lines.push(format!("{prefix}# end of the alternative"));
            }
        }
        Step::Finally { steps, always } => {
            all(steps, prefix, lines);
            lines.push(format!("{prefix}# whatever happened:"));
            all(always, prefix, lines);
        }
        Step::Then { says, expected, .. } => {
            lines.push(format!("{prefix}# then: {says}"));
            all(expected, prefix, lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(word: &str) -> Command {
        Command::new("echo").arg(word)
    }

    /// A plan with every kind of step, whose real run writes what ran to
    /// `ran`.
    fn plan<'a>(ran: &'a Mutex<Vec<String>>, first_fails: bool) -> Vec<Step<'a>> {
        let note = move |word: &'static str| {
            Step::run_with(echo(word), move |_, _, prefix| {
                ran.lock().unwrap().push(format!("{prefix}{word}"));
                Ok(())
            })
        };
        let attempt = Step::run_with(echo("all"), move |_, _, _| {
            ran.lock().unwrap().push("all".into());
            if first_fails {
                anyhow::bail!("all failed");
            }
            Ok(())
        });
        vec![
            Step::fallback(
                vec![attempt],
                "each on its own",
                move |error| {
                    ran.lock().unwrap().push(format!("warned: {error}"));
                    Ok(())
                },
                vec![Step::named("a", vec![note("one")])],
            ),
            Step::Together(vec![
                Branch {
                    name: "x".into(),
                    steps: vec![note("two")],
                },
                Branch {
                    name: "y".into(),
                    steps: vec![Step::work("checked", move |_, prefix| {
                        ran.lock().unwrap().push(format!("{prefix}checked"));
                        Ok(())
                    })],
                },
            ]),
            Step::then("from what was made", vec![note("expected")], move |_| {
                Ok(vec![note("planned")])
            }),
        ]
    }

    #[test]
    fn a_dry_run_shows_the_plan_in_order_with_its_alternative_and_branches() {
        let ran = Mutex::new(Vec::new());
        assert_eq!(
            shown(plan(&ran, false), ""),
            [
                "echo all",
                "# if that fails, instead: each on its own",
                "[a] echo one",
                "# end of the alternative",
                "# side by side:",
                "[x] echo two",
                "[y] # checked",
                "# then: from what was made",
                "echo expected",
            ]
        );
        Runner::new(true).execute(plan(&ran, false)).unwrap();
        assert!(ran.lock().unwrap().is_empty(), "a dry run runs nothing");
    }

    #[test]
    fn a_real_run_takes_the_alternative_only_when_the_attempt_fails() {
        let ran = Mutex::new(Vec::new());
        Runner::new(false).execute(plan(&ran, false)).unwrap();
        let mut done = ran.lock().unwrap().clone();
        // The branches ran side by side: their order is theirs.
        done[1..3].sort();
        assert_eq!(done, ["all", "[x] two", "[y] checked", "planned"]);

        let ran = Mutex::new(Vec::new());
        Runner::new(false).execute(plan(&ran, true)).unwrap();
        let done = ran.lock().unwrap().clone();
        assert_eq!(done[..3], ["all", "warned: all failed", "[a] one"]);
    }

    #[test]
    fn a_failed_step_stops_the_plan_and_a_failed_branch_lets_the_others_finish() {
        let ran = Mutex::new(Vec::new());
        let failing = |name: &str| Branch {
            name: name.into(),
            steps: vec![Step::run(Command::new("false"))],
        };
        let error = Runner::new(false)
            .execute(vec![
                Step::Together(vec![
                    failing("first"),
                    Branch {
                        name: "second".into(),
                        steps: vec![Step::work("ran", |_, _| {
                            ran.lock().unwrap().push("second".to_owned());
                            Ok(())
                        })],
                    },
                ]),
                Step::work("never", |_, _| {
                    ran.lock().unwrap().push("after".to_owned());
                    Ok(())
                }),
            ])
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("[first] command failed"),
            "{error:#}"
        );
        assert_eq!(*ran.lock().unwrap(), ["second"]);
    }
}
