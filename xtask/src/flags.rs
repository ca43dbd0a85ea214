//! Every command-line type of the xtask, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{platform::Platform, podman::BuildArg, project};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Release pipeline for rc-web: multi-platform container images with podman",
    disable_help_subcommand = true
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: XtaskCommand,
}

#[derive(Debug, Subcommand)]
pub enum XtaskCommand {
    /// Install and configure podman, runc, qemu binfmt, mmdebstrap, skopeo, the
    /// registry and cargo-make (Debian/Ubuntu as root); print the steps elsewhere
    Setup(Setup),
    /// Build the base images from the Debian archive (skipped when up to date)
    BaseImages(BaseImages),
    /// Build rc-web (or any Containerfile) for several platforms into a manifest list
    BuildImage(BuildImage),
    /// Prepare the machine (setup, base images), then run the whole test suite
    Test(Test),
}

#[derive(Debug, Args)]
pub struct Test {
    /// Skip machine preparation (setup and base images)
    #[arg(long)]
    pub no_setup: bool,
    /// Extra arguments for `cargo test` (after `--`)
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Setup {
    /// Print what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not install cargo-make
    #[arg(long)]
    pub no_cargo_make: bool,
}

#[derive(Debug, Args)]
pub struct BaseImages {
    /// Rebuild even when the images match their definitions (e.g. for security updates)
    #[arg(long)]
    pub rebuild: bool,
    /// Print the commands that would run; build nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct BuildImage {
    /// Comma-separated platforms to build
    #[arg(
        long = "platform",
        env = "BUILD_PLATFORMS",
        default_value = "linux/amd64,linux/arm64",
        value_parser = crate::platform::parse_list,
        value_name = "LIST"
    )]
    pub platforms: std::vec::Vec<Platform>,
    /// Build one platform at a time instead of all at once
    #[arg(long)]
    pub per_platform: bool,
    /// Containerfile to build
    #[arg(long = "file", short = 'f', value_name = "PATH", default_value = project::RC_WEB_CONTAINERFILE)]
    pub containerfile: PathBuf,
    /// Build context directory
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub context: PathBuf,
    /// Image repository, without tag
    #[arg(long, env = "IMAGE_NAME", default_value = project::DEFAULT_IMAGE)]
    pub image: String,
    /// Tag of the manifest list
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// Build argument NAME=VALUE (repeatable)
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<BuildArg>,
    /// Print the exact commands that would run; run none
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn bad_platforms_are_refused_at_parse_time() {
        let error = Xtask::try_parse_from(["xtask", "build-image", "--platform", "linux/amd64,,linux/arm64"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty item"), "{error}");
    }

    #[test]
    fn build_args_without_equals_are_refused_at_parse_time() {
        let error = Xtask::try_parse_from(["xtask", "build-image", "--build-arg", "VERSION"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("NAME=VALUE"), "{error}");
    }
}
