//! `cargo xtask`: the release pipeline of rc-web. This file parses the command
//! line and dispatches; each command lives in its own module.

mod base_images;
mod bench;
mod build;
mod clean;
mod disk;
mod engine;
mod exec;
mod flags;
mod init;
mod interrupt;
mod lane;
mod platform;
mod project;
mod push;
mod registry;
mod release;
mod report;
mod reproduce;
mod setup;
mod sign;
mod suite;
mod test;

use std::process::ExitCode;

/// How a command that did not fail ended. Exit codes are documented in
/// docs/multi-platform-builds.md: 0 success, 1 failure, 2 bad input (found
/// before anything was done; clap's usage errors too), 3 partial result (some
/// platforms built, others failed), 130/143 stopped by SIGINT/SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Partial,
}

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;

/// Problems with what the user asked for, found before any side effect.
#[derive(Debug)]
pub struct BadInput(pub Vec<String>);

impl std::fmt::Display for BadInput {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "nothing was done:")?;
        for problem in &self.0 {
            write!(formatter, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BadInput {}

fn main() -> ExitCode {
    let flags = flags::Xtask::parse_as(project::command_name());
    if let Err(error) = interrupt::install() {
        eprintln!("warning: {error:#}; Ctrl-C will not clean up");
    }
    let result = match flags.command {
        flags::XtaskCommand::Setup(setup) => setup.run().map(|()| Status::Success),
        flags::XtaskCommand::BaseImages(base_images) => base_images.run().map(|()| Status::Success),
        flags::XtaskCommand::BuildImage(build_image) => build_image.run(),
        flags::XtaskCommand::PushImage(push_image) => push_image.run(),
        flags::XtaskCommand::BuildAndPush(build_and_push) => build_and_push.run(),
        flags::XtaskCommand::PushByDigest(push_by_digest) => push_by_digest.run(),
        flags::XtaskCommand::Merge(merge) => merge.run(),
        flags::XtaskCommand::Verify(verify) => verify.run(),
        flags::XtaskCommand::Reproduce(reproduce) => reproduce.run(),
        flags::XtaskCommand::Init(init) => init.run(),
        flags::XtaskCommand::CleanBuildCache(clean) => clean.run().map(|()| Status::Success),
        flags::XtaskCommand::CheckDiskSpace(check) => check.run().map(|()| Status::Success),
        flags::XtaskCommand::Test(test) => test.run().map(|()| Status::Success),
        flags::XtaskCommand::Bench(bench) => bench.run().map(|()| Status::Success),
    };
    if let Some(interrupted) = interrupt::received() {
        match &result {
            Err(error) => eprintln!("error: {}", project::as_invoked(&format!("{error:#}"))),
            Ok(_) => eprintln!("the step in progress finished before the signal took effect"),
        }
        eprintln!(
            "{interrupted}: this run's temporary lists and build containers were removed; \
             tags point to complete lists only (exit code {})",
            interrupted.exit_code()
        );
        return ExitCode::from(interrupted.exit_code());
    }
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Partial) => {
            eprintln!("partial result: some platforms failed (exit code {EXIT_PARTIAL}); pass --strict to fail instead");
            ExitCode::from(EXIT_PARTIAL)
        }
        Err(error) if error.downcast_ref::<BadInput>().is_some() => {
            eprintln!("error: {}", project::as_invoked(&format!("{error:#}")));
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(error) => {
            eprintln!("error: {}", project::as_invoked(&format!("{error:#}")));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
