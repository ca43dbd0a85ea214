//! `cargo xtask`: the release pipeline of rc-web. This file parses the command
//! line and dispatches; each command lives in its own module.

mod base_images;
mod build_image;
mod exec;
mod flags;
mod git;
mod platform;
mod podman;
mod project;
mod setup;
mod test;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let result = match flags.command {
        flags::XtaskCommand::Setup(setup) => setup.run(),
        flags::XtaskCommand::BaseImages(base_images) => base_images.run(),
        flags::XtaskCommand::BuildImage(build_image) => build_image.run(),
        flags::XtaskCommand::Test(test) => test.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
