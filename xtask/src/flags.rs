//! Every command-line type of the xtask, in one place.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Release pipeline for Rust services: multi-platform container images with podman",
    disable_help_subcommand = true
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: XtaskCommand,
}

impl Xtask {
    /// The flags, with usage and help naming the tool as the user runs it
    /// (`cargo xtask` in this repository, `podman-release` installed).
    pub fn parse_as(name: &'static str) -> Xtask {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Xtask::command().name(name).bin_name(name).get_matches();
        Xtask::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum XtaskCommand {
    /// Install and configure podman, runc, qemu binfmt, mmdebstrap, skopeo, the
    /// registry and cargo-make (Debian/Ubuntu as root); print the steps elsewhere
    Setup(Setup),
    /// Build the base images from the Debian archive (skipped when up to date)
    BaseImages(BaseImages),
    /// Build rc-web (or any Containerfile) for several platforms into manifest lists, one per tag
    BuildImage(BuildImage),
    /// Push every tag's manifest list (with all its images) and read each back from the registry
    PushImage(PushImage),
    /// build-image, then push-image
    BuildAndPush(BuildAndPush),
    /// Build one platform and push its image by digest, without a tag (a
    /// release job per architecture); write the digest to a file
    PushByDigest(PushByDigest),
    /// Merge images pushed by digest into a manifest list, give it every tag
    /// and push it (the release's last job)
    Merge(Merge),
    /// Check a release's signatures and attestations (cosign): the list,
    /// each platform image, each image's provenance and SBOM
    Verify(Verify),
    /// Rebuild a published release from its commit, in a private storage,
    /// and compare digests; where they differ, say what differs
    Reproduce(Reproduce),
    /// Set a Rust repository up for the pipeline: the metadata table, a
    /// Containerfile, .containerignore, the release workflow, cargo-make tasks
    Init(Init),
    /// Remove build cache, dangling images, leftover build containers and broken lists
    CleanBuildCache(CleanBuildCache),
    /// Report free space for podman's storage and what each kind of build needs
    CheckDiskSpace(CheckDiskSpace),
    /// Prepare the machine (setup, base images), then run the whole test suite
    Test(Test),
    /// Measure the pipeline against its alternatives (docs/benchmarks.md)
    Bench(Bench),
}

#[derive(Debug, Args)]
pub struct Init {
    /// The binary package the image runs (required when the workspace has several)
    #[arg(long, short = 'p')]
    pub package: Option<String>,
    /// The registry [default: from the git remote: ghcr.io for GitHub, registry.gitlab.com for GitLab]
    #[arg(long)]
    pub registry: Option<String>,
    /// The image's repository path [default: OWNER/PACKAGE, the owner from the git remote]
    #[arg(long)]
    pub name: Option<String>,
    /// Replace files that exist (the Containerfile, .containerignore, the workflow)
    #[arg(long)]
    pub force: bool,
    /// Print what would be written; write nothing
    #[arg(long)]
    pub dry_run: bool,
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
    /// Write every base image (built first when needed) into this archive, for
    /// --import into another storage (another user's, another podman's)
    #[arg(long, value_name = "ARCHIVE", conflicts_with_all = ["import", "rebuild"])]
    pub export: Option<PathBuf>,
    /// Load the base images from an archive of --export when they are not up to date here
    #[arg(long, value_name = "ARCHIVE", conflicts_with = "rebuild")]
    pub import: Option<PathBuf>,
    /// Take the base images this machine lacks from REPO (a registry
    /// repository, no tag), where they are kept by definition fingerprint;
    /// push there those built here
    #[arg(long, env = "CACHE_REPO", value_name = "REPO", conflicts_with_all = ["import", "export"])]
    pub cache_repo: Option<String>,
    /// Verify the TLS certificate of --cache-repo's registry
    #[arg(long, env = "CACHE_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub cache_tls_verify: bool,
    /// Print the commands that would run; build nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Names and tags shared by building and pushing.
#[derive(Debug, Clone, Args)]
pub struct ImageFlags {
    /// Registries host[:port], without a scheme (comma-separated or
    /// repeated; the first names the local lists) [default: the declared `registries`]
    #[arg(
        long = "registry",
        env = "REGISTRY",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub registries: Vec<String>,
    /// Repository within each registry [default: the declared `name`]
    #[arg(long, env = "IMAGE_NAME")]
    pub image: Option<String>,
    /// The package whose image to release, when several declare one
    /// (`[package.metadata.container-image]` in its Cargo.toml)
    #[arg(long, env = "RELEASE_PACKAGE", value_name = "NAME")]
    pub package: Option<String>,
    /// Use exactly these tags instead of the ones computed from git (comma-separated or repeated)
    #[arg(long = "tag", env = "TAG", value_delimiter = ',', value_name = "TAG")]
    pub tags: Vec<String>,
    /// Never move `latest`
    #[arg(long)]
    pub no_latest: bool,
    /// Move `latest` even when some platforms failed to build
    #[arg(long)]
    pub latest_on_partial: bool,
    /// Print the exact commands that would run; run none
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BuildFlags {
    /// Comma-separated platforms to build [default: the declared `platforms`]
    #[arg(long = "platform", env = "BUILD_PLATFORMS", value_name = "LIST")]
    pub platforms: Option<String>,
    /// Build one platform at a time instead of all at once
    #[arg(long)]
    pub per_platform: bool,
    /// Containerfile to build [default: the declared `containerfile`]
    #[arg(long = "file", short = 'f', value_name = "PATH")]
    pub containerfile: Option<PathBuf>,
    /// Build context directory [default: the declared `context`]
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// Build argument NAME=VALUE (repeatable)
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// Fail when any platform fails, instead of keeping the ones that built
    #[arg(long)]
    pub strict: bool,
    /// Build even when the disk has less free space than the minimum
    #[arg(long)]
    pub force: bool,
    /// Clean the build cache afterwards (for machines short of disk)
    #[arg(long)]
    pub clean: bool,
    /// Build every step again instead of using cached layers (a clean build;
    /// no registry cache either)
    #[arg(long)]
    pub no_cache: bool,
    /// Registry layer cache: read and write layers (and the base images, by
    /// fingerprint) in REPO, a repository with no tag; without REPO, beside
    /// the image (`<registry>/<name>-cache`) [default: the declared
    /// `cache-repo`, else none]
    #[arg(long, env = "CACHE_REPO", value_name = "REPO", num_args = 0..=1, default_missing_value = "")]
    pub cache_repo: Option<String>,
    /// Verify the cache registry's TLS certificate (push commands use
    /// `--tls-verify` when the cache is in a registry they push to)
    #[arg(long, env = "CACHE_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub cache_tls_verify: bool,
    /// Never change this machine: fail when podman, mmdebstrap or qemu's
    /// registration is missing, instead of running `setup` first
    #[arg(long, env = "XTASK_NO_SETUP", value_parser = clap::builder::BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_setup: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PushFlags {
    /// Verify the registry's TLS certificate (`--tls-verify false` only for a local test registry)
    #[arg(long, env = "REGISTRY_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// Manifest list format in the registry
    #[arg(long, value_enum, default_value = "oci")]
    pub format: Format,
    /// Push an image built from a work tree with uncommitted changes
    #[arg(long)]
    pub allow_dirty: bool,
    /// Attempts per tag for transient failures (exponential backoff)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,
}

#[derive(Debug, Args)]
pub struct BuildImage {
    #[command(flatten)]
    pub image: ImageFlags,
    #[command(flatten)]
    pub build: BuildFlags,
}

/// How a release is signed (see `sign`).
#[derive(Debug, Clone, Args)]
pub struct SignFlags {
    /// Sign the release (the list, each image, their provenance and SBOM)
    /// with this cosign key (a `cosign generate-key-pair` file or a KMS URI);
    /// its password in COSIGN_PASSWORD. In GitHub Actions with `id-token:
    /// write` and no key, the release is signed keyless
    #[arg(long, env = "SIGNING_KEY", value_name = "KEY")]
    pub signing_key: Option<String>,
    /// Do not sign, even with a key or OIDC at hand
    #[arg(long)]
    pub no_sign: bool,
}

#[derive(Debug, Args)]
pub struct Verify {
    #[command(flatten)]
    pub release: PublishedRelease,
}

/// A release in its registry, whose signatures it must carry, and how to
/// report on it.
#[derive(Debug, Args)]
pub struct PublishedRelease {
    /// `REGISTRY/NAME:TAG` or `REGISTRY/NAME@sha256:...`
    pub image: String,
    #[command(flatten)]
    pub identity: IdentityFlags,
    /// Verify the registry's TLS certificate
    #[arg(long, env = "REGISTRY_TLS_VERIFY", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// Print the verdict and every check or difference as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Whose signatures a release must carry.
#[derive(Debug, Args)]
pub struct IdentityFlags {
    /// The release's public key (`cosign.pub`, or a KMS URI)
    #[arg(long, env = "VERIFY_KEY", value_name = "KEY")]
    pub key: Option<String>,
    /// For a keyless release: the signer's identity (the workflow's URL with
    /// its ref)
    #[arg(long, value_name = "IDENTITY")]
    pub certificate_identity: Option<String>,
    /// For a keyless release: the OIDC issuer
    /// (https://token.actions.githubusercontent.com)
    #[arg(long, value_name = "URL")]
    pub certificate_oidc_issuer: Option<String>,
}

/// The identity is optional here: without it, the provenance is read
/// unchecked (and the report says so).
#[derive(Debug, Args)]
pub struct Reproduce {
    #[command(flatten)]
    pub release: PublishedRelease,
}

#[derive(Debug, Args)]
pub struct PushImage {
    #[command(flatten)]
    pub image: ImageFlags,
    #[command(flatten)]
    pub push: PushFlags,
    #[command(flatten)]
    pub sign: SignFlags,
    /// Platforms the lists must hold (default: whatever was built)
    #[arg(long = "platform", value_name = "LIST")]
    pub platforms: Option<String>,
    #[command(flatten)]
    pub output: OutputFlags,
}

#[derive(Debug, Args)]
pub struct BuildAndPush {
    #[command(flatten)]
    pub image: ImageFlags,
    #[command(flatten)]
    pub build: BuildFlags,
    #[command(flatten)]
    pub push: PushFlags,
    #[command(flatten)]
    pub sign: SignFlags,
    /// Build PLATFORM on another podman: PLATFORM=CONNECTION, a `podman
    /// system connection` name or a URL (ssh://..., unix://...); repeatable
    /// or comma-separated. Each builder pushes its image by digest; the
    /// list is merged here
    #[arg(
        long = "builder",
        env = "BUILDERS",
        value_delimiter = ',',
        value_name = "PLATFORM=CONNECTION"
    )]
    pub builders: Vec<String>,
    /// Give up a builder whose podman has not answered `podman info` for
    /// this many seconds (its machine went away, its service stopped): its
    /// platform fails, the others are released
    #[arg(
        long,
        env = "BUILDER_TIMEOUT",
        default_value_t = 120,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub builder_timeout: u64,
    /// After the push, rebuild the release from its commit in a private
    /// storage and compare digests (what `cargo xtask reproduce` does); a
    /// difference fails the run, with the report, and deletes nothing
    #[arg(long)]
    pub reproduce: bool,
    #[command(flatten)]
    pub output: OutputFlags,
}

#[derive(Debug, Clone, Args)]
pub struct OutputFlags {
    /// Print image, tags, per-platform digests, the list digest and failed
    /// platforms as JSON on stdout (GITHUB_OUTPUT and GITHUB_STEP_SUMMARY,
    /// when set, get them too)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PushByDigest {
    #[command(flatten)]
    pub image: ImageFlags,
    #[command(flatten)]
    pub build: BuildFlags,
    #[command(flatten)]
    pub push: PushFlags,
    /// Write the pushed image's digest (`sha256:...`) to this file
    #[arg(long, value_name = "PATH")]
    pub digest_file: PathBuf,
    #[command(flatten)]
    pub output: OutputFlags,
}

#[derive(Debug, Args)]
pub struct Merge {
    #[command(flatten)]
    pub image: ImageFlags,
    #[command(flatten)]
    pub push: PushFlags,
    #[command(flatten)]
    pub sign: SignFlags,
    /// Platforms the release should have; missing ones make a partial result
    /// [default: the declared `platforms`]
    #[arg(long = "platform", env = "BUILD_PLATFORMS", value_name = "LIST")]
    pub platforms: Option<String>,
    /// A directory of digest files written by push-by-digest (every file in it)
    #[arg(long, value_name = "DIR")]
    pub digests_dir: Option<PathBuf>,
    /// A digest file written by push-by-digest (repeatable)
    #[arg(long = "digest-file", value_name = "PATH")]
    pub digest_files: Vec<PathBuf>,
    /// Fail when a platform is missing, instead of releasing the others
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub output: OutputFlags,
}

#[derive(Debug, Args)]
pub struct CleanBuildCache {
    /// Print what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckDiskSpace {
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Bench {
    /// Run every figure once on a tiny workload (CI's check that the
    /// benchmark works), instead of measuring rc-web
    #[arg(long)]
    pub quick: bool,
    /// Runs of each short measurement (their median is reported)
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Write the results (Markdown) to this file
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also measure the figures that depend on the engine (2, 4 and the
    /// fresh-runner release) on Debian 13's podman 5.4, nested as in the
    /// test lane, in the same run
    #[arg(long = "lane", value_name = "LANE", value_parser = ["podman5"])]
    pub lanes: Vec<String>,
    /// Only the figures that depend on the engine (what `--lane` runs in
    /// the lane's engine)
    #[arg(long)]
    pub engine_only: bool,
    /// Measure only this figure. `6` (check-disk-space against podman info)
    /// is the one measured on its own: it builds a storage of its own, where
    /// the others share the builds of one run
    #[arg(long, value_name = "N", value_parser = ["6"])]
    pub figure: Option<String>,
    /// Write the table's rows (Markdown) to this file, each figure's name
    /// marked with the engine (what `--lane` reads back)
    #[arg(long, value_name = "PATH", hide = true)]
    pub rows: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Skip machine preparation (setup and base images)
    #[arg(long)]
    pub no_setup: bool,
    /// Run only these lanes (repeat, or comma-separate); all three by default.
    /// `host`: the whole suite on this machine's podman as root; `podman5`:
    /// the end-to-end tests on Debian 13's podman 5.4 (nested); `rootless`:
    /// the build and push tests as an unprivileged user
    #[arg(long, value_enum, value_delimiter = ',')]
    pub lane: Vec<Lane>,
    /// Run the lanes one after the other (by default the host lane runs
    /// beside the podman 5 and rootless lanes)
    #[arg(long)]
    pub one_lane_at_a_time: bool,
    /// Run only the tests whose `target::name` contains one of these words
    /// (after `--`, e.g. `-- pipeline_e2e:: tidy`), in each lane chosen
    #[arg(last = true)]
    pub filters: Vec<String>,
}

/// The manifest list format a push writes (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OCI image index
    Oci,
    /// Docker manifest list (schema 2)
    V2s2,
}

impl Format {
    pub fn podman_name(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::V2s2 => "v2s2",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::V2s2 => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }

    /// The media type of one image's manifest in this format.
    pub fn image_media_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
            Format::V2s2 => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }
}

/// A lane of `cargo xtask test` (`--lane`); what each runs is in `lane.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lane {
    /// This machine's podman as root: the whole suite
    Host,
    /// Debian 13's podman 5.4, nested in a privileged container
    Podman5,
    /// This machine's podman as the unprivileged user rc-rootless
    Rootless,
}

/// A command's `--dry-run` (the executor, `exec::Runner::of`, reads it).
pub trait DryRun {
    fn dry_run(&self) -> bool;
}

impl DryRun for ImageFlags {
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl DryRun for Setup {
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl DryRun for CleanBuildCache {
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl DryRun for Init {
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl DryRun for BaseImages {
    fn dry_run(&self) -> bool {
        self.dry_run
    }
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
    fn tags_split_on_commas_and_tls_verification_is_on_by_default() {
        let Xtask {
            command: XtaskCommand::BuildAndPush(flags),
        } = Xtask::try_parse_from([
            "xtask",
            "build-and-push",
            "--tag",
            "v1,candidate",
            "--tag",
            "x",
        ])
        .unwrap()
        else {
            panic!("parsed another command")
        };
        assert_eq!(flags.image.tags, ["v1", "candidate", "x"]);
        assert!(flags.push.tls_verify);
        assert_eq!(flags.push.format, Format::Oci);
    }
}
