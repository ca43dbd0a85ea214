//! The one place that spawns external programs.
//!
//! A [`Command`] is a value: program, argv, optional stdin. Building one never
//! spawns anything, so plans and tests can look at the exact arguments. A
//! [`Runner`] executes commands: it echoes each one (shell-quoted, so it can be
//! pasted) to stderr, honours `--dry-run` for commands with side effects, and
//! names the command again when it fails.

use std::{
    fmt,
    io::{BufRead, BufReader},
};

use anyhow::{bail, Context, Result};

use crate::{flags, interrupt};

mod plan;
pub use plan::{locked, taken, Branch, Step};

#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment for the child (never secrets: these are printed).
    pub env: Vec<(String, String)>,
    /// Variables of ours the child must not see (shown as `env -u NAME`).
    pub env_remove: Vec<String>,
    /// Sent on standard input.
    pub stdin: Option<Stdin>,
    /// Working directory of the child (ours when `None`).
    pub dir: Option<std::path::PathBuf>,
    /// Variables of ours that hold secrets and that this child needs (see
    /// [`is_secret_variable`]); every other such variable is withheld.
    pub kept_secret_variables: Vec<String>,
}

/// Names of variables that hold secrets (`REGISTRY_TOKEN`, `GITHUB_TOKEN`,
/// `COSIGN_PASSWORD`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, a user's
/// `AWS_SECRET_ACCESS_KEY`...). No child sees them unless its command names
/// one in [`Command::inherit_secret`]: `/proc/PID/environ` of a `podman
/// build`, its `conmon` or a `RUN` step is readable by whoever else runs as
/// the same user, and a build step can print its environment.
pub fn is_secret_variable(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    [
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "CREDENTIAL",
        "PRIVATE_KEY",
        "API_KEY",
    ]
    .iter()
    .any(|marker| name.contains(marker))
}

/// What a [`Command`] reads on standard input.
#[derive(Clone, PartialEq, Eq)]
pub enum Stdin {
    /// Never printed. Secrets travel this way only.
    Secret(Vec<u8>),
    /// Printed as `printf '%s' '...' | ` before the command, so a pasted
    /// command gets it too (a Containerfile fragment for `podman build -f -`).
    Text(String),
}

/// A secret shows as a marker only.
impl fmt::Debug for Stdin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stdin::Secret(_) => formatter.write_str("Secret(..)"),
            Stdin::Text(text) => formatter.debug_tuple("Text").field(text).finish(),
        }
    }
}

impl Command {
    pub fn new(program: impl Into<String>) -> Command {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: None,
            dir: None,
            kept_secret_variables: Vec::new(),
        }
    }

    pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Command {
        self.dir = Some(dir.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Command {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Keeps our `name` from the child (podman 5.6 turns an exported
    /// `SOURCE_DATE_EPOCH` into a build flag of its own, for example).
    /// Lets this child have one of our secret variables (by name; the value
    /// is never part of the command).
    pub fn inherit_secret(mut self, name: impl Into<String>) -> Command {
        self.kept_secret_variables.push(name.into());
        self
    }

    pub fn env_remove(mut self, name: impl Into<String>) -> Command {
        self.env_remove.push(name.into());
        self
    }

    fn expression(&self) -> duct::Expression {
        let mut expression = duct::cmd(&self.program, &self.args);
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if is_secret_variable(name)
                && !self.kept_secret_variables.iter().any(|kept| kept == name)
                && !self.env.iter().any(|(set, _)| set == name)
            {
                expression = expression.env_remove(name);
            }
        }
        for name in &self.env_remove {
            expression = expression.env_remove(name);
        }
        for (name, value) in &self.env {
            expression = expression.env(name, value);
        }
        if let Some(dir) = &self.dir {
            expression = expression.dir(dir);
        }
        let expression = match &self.stdin {
            Some(Stdin::Secret(bytes)) => expression.stdin_bytes(bytes.clone()),
            Some(Stdin::Text(text)) => expression.stdin_bytes(text.clone().into_bytes()),
            None => expression.stdin_null(),
        };
        // A process group of its own: a Ctrl-C in the terminal reaches only
        // the xtask, which stops children in an order that lets them clean up
        // (see `interrupt`).
        expression.before_spawn(|command| {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            Ok(())
        })
    }
}

/// Shell-quoted, ready to paste; a secret on stdin shows only as a marker.
impl fmt::Display for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.dir {
            write!(formatter, "cd {} && ", shell_quote(&dir.to_string_lossy()))?;
        }
        if let Some(Stdin::Text(text)) = &self.stdin {
            write!(formatter, "printf '%s' {} | ", shell_quote(text))?;
        }
        if !self.env_remove.is_empty() {
            formatter.write_str("env")?;
            for name in &self.env_remove {
                write!(formatter, " -u {}", shell_quote(name))?;
            }
            formatter.write_str(" ")?;
        }
        for (name, value) in &self.env {
            write!(formatter, "{name}={} ", shell_quote(value))?;
        }
        formatter.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(formatter, " {}", shell_quote(arg))?;
        }
        if let Some(Stdin::Secret(_)) = &self.stdin {
            formatter.write_str(" <(stdin)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Command({self})")
    }
}

/// Quotes one word for a POSIX shell, only when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&byte));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How many of a failed command's last output lines its error repeats.
const FAILURE_TAIL_LINES: usize = 5;

/// Runs commands and plans ([`Runner::execute`]); in a dry run, prints
/// them instead. Whether this is a dry run is known here only: a command
/// plans its steps the same way either way.
#[derive(Debug, Clone, Copy)]
pub struct Runner {
    dry_run: bool,
}

impl Runner {
    pub fn new(dry_run: bool) -> Runner {
        Runner { dry_run }
    }

    /// The runner a command's flags ask for (`--dry-run`).
    pub fn of(flags: &impl flags::DryRun) -> Runner {
        Runner::new(flags.dry_run())
    }

    /// Whether commands with effects run (not a dry run): for what is
    /// printed around a plan (a summary of what a real run did).
    pub fn acts(&self) -> bool {
        !self.dry_run
    }

    /// This program's own effect outside a plan (a lock taken, a directory
    /// made): done in a real run; a dry run does nothing and gets `None`.
    pub fn if_real<T>(&self, effect: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        if self.dry_run {
            return Ok(None);
        }
        effect().map(Some)
    }

    /// Runs a command with side effects, its output going to our stderr.
    /// In dry-run mode prints it and runs nothing.
    pub fn run(&self, command: &Command) -> Result<()> {
        self.run_prefixed(command, "")
    }

    /// Like [`Runner::run`], with every output line prefixed (`[linux/arm64] `).
    pub fn run_prefixed(&self, command: &Command, prefix: &str) -> Result<()> {
        self.run_prefixed_observed(command, prefix, |_| {})
    }

    /// [`Runner::run_prefixed`], telling `started` the child's process IDs
    /// as soon as it runs (for a watchdog that may have to stop it).
    pub fn run_prefixed_observed(
        &self,
        command: &Command,
        prefix: &str,
        started_as: impl FnOnce(&[u32]),
    ) -> Result<()> {
        if self.dry_run {
            println!("{command}");
            return Ok(());
        }
        eprintln!("{prefix}$ {command}");
        let started = std::time::Instant::now();
        let reader = command
            .expression()
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("cannot start `{}`", command.program))?;
        let pids = reader.pids();
        interrupt::register(&pids);
        started_as(&pids);
        let _registered = Registered(pids);
        let mut lines = BufReader::new(&reader);
        let mut line = Vec::new();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        loop {
            line.clear();
            let read = lines
                .read_until(b'\n', &mut line)
                .context("cannot read command output")?;
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            eprint!("{prefix}{text}");
            if tail.len() == FAILURE_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.trim_end().to_owned());
        }
        let output = reader
            .try_wait()
            .context("cannot wait for command")?
            .context("command output ended before the command did")?;
        report_timing(command, started, prefix);
        if !output.status.success() {
            if let Some(interrupted) = interrupt::received() {
                return Err(
                    anyhow::Error::new(interrupted).context(format!("{prefix}stopped: {command}"))
                );
            }
            let tail: Vec<String> = tail.into_iter().filter(|line| !line.is_empty()).collect();
            bail!(
                "{prefix}command failed ({}): {command}\n{}",
                output.status,
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// Runs a command with side effects without echoing its output; returns
    /// whether it succeeded. In dry-run mode prints it and reports success.
    pub fn run_quietly(&self, command: &Command) -> Result<bool> {
        self.run_quietly_prefixed(command, "")
    }

    /// [`Runner::run_quietly`], its echo prefixed (`[tags] `).
    pub fn run_quietly_prefixed(&self, command: &Command, prefix: &str) -> Result<bool> {
        if self.dry_run {
            println!("{prefix}{command}");
            return Ok(true);
        }
        eprintln!("{prefix}$ {command}");
        self.succeeds(command)
    }

    /// Runs a read-only query and returns its stdout. Queries run in dry-run
    /// mode too, so a dry run plans from the real state.
    pub fn read(&self, command: &Command) -> Result<String> {
        read_bounded(command, None)
    }

    /// [`Runner::read`], for a query that may never answer (a podman whose
    /// machine went away): past `limit` the query is killed and this fails,
    /// saying so.
    pub fn read_within(&self, command: &Command, limit: std::time::Duration) -> Result<String> {
        read_bounded(command, Some(limit))
    }

    /// Runs a query and reports only whether it succeeded (e.g. "does this image exist").
    pub fn succeeds(&self, command: &Command) -> Result<bool> {
        let output = wait_registered(
            command,
            command.expression().stdout_null().stderr_null(),
            None,
        )?;
        Ok(output.status.success())
    }
}

/// A query's stdout, within `limit` if one is given.
fn read_bounded(command: &Command, limit: Option<std::time::Duration>) -> Result<String> {
    let output = wait_registered(
        command,
        command.expression().stdout_capture().stderr_capture(),
        limit,
    )?;
    if !output.status.success() {
        bail!(
            "command failed ({}): {command}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("output of `{command}` is not UTF-8"))
}

/// With `XTASK_TIMINGS` set, every command's wall time goes to stderr.
fn report_timing(command: &Command, started: std::time::Instant, prefix: &str) {
    if std::env::var_os("XTASK_TIMINGS").is_some() {
        eprintln!(
            "{prefix}[timing] {:>7.3} s  {command}",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Runs an expression to completion (killed past `limit`, if given),
/// registered with `interrupt` meanwhile.
fn wait_registered(
    command: &Command,
    expression: duct::Expression,
    limit: Option<std::time::Duration>,
) -> Result<std::process::Output> {
    let started = std::time::Instant::now();
    let handle = expression
        .unchecked()
        .start()
        .with_context(|| format!("cannot start `{}`", command.program))?;
    let pids = handle.pids();
    interrupt::register(&pids);
    let _registered = Registered(pids.clone());
    let waited = || format!("cannot wait for `{}`", command.program);
    let output = match limit {
        None => handle.wait().with_context(waited)?,
        Some(limit) => loop {
            if let Some(output) = handle.try_wait().with_context(waited)? {
                break output;
            }
            if started.elapsed() >= limit {
                for pid in &pids {
                    interrupt::kill_group(*pid);
                }
                let _ = handle.wait();
                bail!(
                    "no answer within {} s: {command}",
                    limit.as_secs_f64().round()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        },
    };
    report_timing(command, started, "");
    Ok(output.clone())
}

/// Unregisters a child from `interrupt` once it has been waited for.
struct Registered(Vec<u32>);

impl Drop for Registered {
    fn drop(&mut self) {
        interrupt::unregister(&self.0);
    }
}

/// The first line of a program's output (what a one-line summary shows).
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// An error's last words: the innermost cause's last non-empty line (a
/// tool's own message), without its `Error: ` prefix.
pub fn last_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("failed")
        .trim_start_matches("Error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_that_hold_secrets_are_known_by_name() {
        for secret in [
            "REGISTRY_TOKEN",
            "REGISTRY_PASSWORD",
            "GITHUB_TOKEN",
            "COSIGN_PASSWORD",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "CARGO_REGISTRY_TOKEN",
            "npm_token",
        ] {
            assert!(is_secret_variable(secret), "{secret}");
        }
        for plain in [
            "PATH",
            "HOME",
            "REGISTRY_USER",
            "GITHUB_ACTOR",
            "CONTAINER_SSHKEY",
            "REGISTRY_AUTH_FILE",
        ] {
            assert!(!is_secret_variable(plain), "{plain}");
        }
    }

    #[test]
    fn a_query_that_never_answers_is_cut_off_and_says_so() {
        let runner = Runner::new(false);
        let error = runner
            .read_within(
                &Command::new("sleep").arg("600"),
                std::time::Duration::from_secs(1),
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no answer within 1 s: sleep 600"),
            "{error:#}"
        );
        assert_eq!(
            runner
                .read_within(
                    &Command::new("echo").arg("here"),
                    std::time::Duration::from_secs(30)
                )
                .unwrap(),
            "here\n"
        );
    }

    #[test]
    fn display_is_pasteable_shell() {
        let command = Command::new("podman").args([
            "build",
            "--build-arg",
            "GREETING=hello world",
            "-f",
            "it's.Containerfile",
            "",
        ]);
        assert_eq!(
            command.to_string(),
            r#"podman build --build-arg 'GREETING=hello world' -f 'it'\''s.Containerfile' ''"#
        );
    }

    #[test]
    fn environment_is_shown_as_a_prefix() {
        let command = Command::new("mmdebstrap")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("bookworm");
        assert_eq!(
            command.to_string(),
            "SOURCE_DATE_EPOCH=1700000000 mmdebstrap bookworm"
        );
    }

    #[test]
    fn removed_variables_reach_neither_the_child_nor_the_printed_command() {
        // `printenv NAME` fails when NAME is not set. The name is this
        // test's alone, so setting it in our environment races no one.
        let name = "RC_EXEC_TEST_REMOVED_VARIABLE";
        std::env::set_var(name, "set");
        let runner = Runner::new(false);
        let printenv = Command::new("printenv").arg(name);
        assert!(runner.succeeds(&printenv).unwrap(), "children inherit it");
        let command = printenv.env_remove(name);
        assert_eq!(
            command.to_string(),
            format!("env -u {name} printenv {name}")
        );
        assert!(!runner.succeeds(&command).unwrap(), "run directly");
        let pasted = Command::new("sh").arg("-c").arg(command.to_string());
        assert!(!runner.succeeds(&pasted).unwrap(), "run as printed");
    }

    #[test]
    fn a_secret_on_stdin_is_never_displayed() {
        let mut command = Command::new("podman").args(["login", "--password-stdin"]);
        command.stdin = Some(Stdin::Secret(b"s3cret".to_vec()));
        let shown = format!("{command} {command:?} {:?}", command.stdin);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<(stdin)"));
    }

    #[test]
    fn text_on_stdin_is_shown_as_a_pipe_that_a_shell_runs_as_is() {
        let mut command = Command::new("cat").current_dir("/");
        command.stdin = Some(Stdin::Text("LABEL \"a\"=\"it's \\$HOME\"".into()));
        let shown = command.to_string();
        assert_eq!(
            shown,
            "cd / && printf '%s' 'LABEL \"a\"=\"it'\\''s \\$HOME\"' | cat"
        );
        let through_a_shell = Runner::new(false)
            .read(&Command::new("sh").args(["-c", &shown]))
            .unwrap();
        assert_eq!(through_a_shell, "LABEL \"a\"=\"it's \\$HOME\"");
        assert_eq!(
            Runner::new(false).read(&command).unwrap(),
            through_a_shell,
            "run directly, the command reads the same text"
        );
    }

    #[test]
    fn read_returns_stdout_and_failures_name_the_command() {
        let runner = Runner::new(false);
        assert_eq!(
            runner.read(&Command::new("echo").arg("hi")).unwrap(),
            "hi\n"
        );
        let error = runner.read(&Command::new("false")).unwrap_err();
        assert!(format!("{error:#}").contains("command failed"), "{error:#}");
        let error = runner
            .read(&Command::new("no-such-program-rc"))
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("no-such-program-rc"),
            "{error:#}"
        );
    }

    #[test]
    fn dry_run_does_not_execute_side_effects() {
        let marker = std::env::temp_dir().join(format!("rc-dry-run-{}", std::process::id()));
        let runner = Runner::new(true);
        runner
            .run(&Command::new("touch").arg(marker.to_str().unwrap()))
            .unwrap();
        assert!(!marker.exists());
        Runner::new(false)
            .run(&Command::new("touch").arg(marker.to_str().unwrap()))
            .unwrap();
        assert!(marker.exists());
        std::fs::remove_file(marker).unwrap();
    }

    #[test]
    fn failed_run_reports_the_command() {
        let error = Runner::new(false)
            .run(&Command::new("sh").args(["-c", "echo boom; exit 3"]))
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("sh -c 'echo boom; exit 3'"), "{message}");
        assert!(
            message.ends_with("\nboom"),
            "the error repeats the command's last output: {message}"
        );
    }
}
