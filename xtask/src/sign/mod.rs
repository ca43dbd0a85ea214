//! Signing a release with cosign, and checking a release's signatures.
//!
//! Every release signs its manifest list and every platform image in it
//! (`cosign sign --recursive`): a client that pulls one platform checks that
//! image's own signature, not the list's (podman#21209). Two signers, one
//! code path, differing only in cosign's flags:
//!
//! - a key (`--signing-key` / `SIGNING_KEY`: a `cosign generate-key-pair`
//!   file, or a KMS URI cosign knows). Its password is read from
//!   `COSIGN_PASSWORD` here and given to cosign on stdin only; no
//!   transparency log (works offline);
//! - keyless, in GitHub Actions with `id-token: write`: cosign gets an OIDC
//!   token for the workflow, a certificate from Fulcio, and writes to
//!   Rekor. Only cosign sees the two `ACTIONS_ID_TOKEN_REQUEST_*` variables.
//!
//! Why cosign and not podman's `--sign-by-sigstore-private-key`: podman's
//! works only with a local podman (the remote client, i.e. macOS and the
//! builders, drops it), has no keyless mode before 4.4, cannot attest, and
//! would need the key's password in a file. cosign signs by digest after
//! the push, from this machine, whatever podman built; it also makes and
//! checks the attestations, and its signatures are the ones podman, skopeo
//! and every registry client check (`sigstoreSigned` in policy.json).

pub mod attest;
pub mod verify;

use anyhow::{Context, Result};

use crate::{
    engine::Destination,
    exec::{Command, Runner, Stdin, Step},
    flags::SignFlags,
    platform::Platform,
    registry::RemoteIndex,
    release::Release,
};

pub const PROGRAM: &str = "cosign";
/// cosign's own variable for the key's password; read here only.
pub const PASSWORD_VARIABLE: &str = "COSIGN_PASSWORD";
/// What GitHub Actions gives a job with `id-token: write`.
pub const OIDC_VARIABLES: [&str; 2] = [
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// Who signs.
#[derive(Clone, PartialEq, Eq)]
pub enum Signer {
    /// A key file or KMS URI, with its password (empty for none).
    Key { key: String, password: Vec<u8> },
    /// GitHub Actions' OIDC identity (Fulcio certificate, Rekor entry).
    Keyless,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Key { key, .. } => write!(formatter, "Key({key}, password hidden)"),
            Signer::Keyless => formatter.write_str("Keyless"),
        }
    }
}

impl Signer {
    /// For summaries: `key cosign.key`, `keyless (GitHub Actions OIDC)`.
    pub fn describe(&self) -> String {
        match self {
            Signer::Key { key, .. } => format!("key {key}"),
            Signer::Keyless => "keyless (GitHub Actions OIDC, Fulcio, Rekor)".to_owned(),
        }
    }

    fn apply(&self, command: Command) -> Command {
        match self {
            Signer::Key { key, password } => {
                let mut command = command.args(["--key", key, "--tlog-upload=false"]);
                // cosign reads a piped password whole (COSIGN_PASSWORD unset:
                // children never see it).
                command.stdin = Some(Stdin::Secret(password.clone()));
                command
            }
            Signer::Keyless => OIDC_VARIABLES
                .iter()
                .fold(command, |command, name| command.inherit_secret(*name)),
        }
    }
}

/// Whether, and how, this release is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    Sign(Signer),
    /// Not signed, and why (for the summary).
    Off(String),
}

impl Signing {
    /// From the flags and the environment; problems (no cosign, a key that
    /// does not open) are added to `problems`, found before anything runs.
    pub fn from_flags(flags: &SignFlags, runner: &Runner, problems: &mut Vec<String>) -> Signing {
        let oidc = OIDC_VARIABLES
            .iter()
            .all(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
        let password = std::env::var(PASSWORD_VARIABLE).unwrap_or_default();
        let signing = choose(flags, oidc, password.into_bytes());
        if let Signing::Sign(signer) = &signing {
            check(signer, runner, problems);
        }
        signing
    }

    /// For the report: signed (every registry that has the release), and
    /// with what or why not.
    pub fn state(&self, pushed: &crate::report::Pushed) -> (bool, String) {
        match self {
            Signing::Sign(signer) => (pushed.remote().is_some(), signer.describe()),
            Signing::Off(why) => (false, format!("not signed: {why}")),
        }
    }

    /// A line of the summary; loud when the release is not signed.
    pub fn print_summary(&self, pushed: &crate::report::Pushed) {
        match self {
            Signing::Sign(signer) if pushed.remote().is_some() => eprintln!(
                "  signed:    the list, each image, their provenance and SBOM ({}; \
                 check with `cargo xtask verify`)",
                signer.describe()
            ),
            Signing::Sign(_) => {}
            Signing::Off(why) => eprintln!("  NOT SIGNED: {why}"),
        }
    }

    /// The steps that sign the list `pushed.index` and every image in it,
    /// then attest each image's provenance and SBOM (none when not signing).
    pub fn steps<'a>(&'a self, pushed: PushedRelease<'a>) -> Result<Vec<Step<'a>>> {
        let Signing::Sign(signer) = self else {
            return Ok(Vec::new());
        };
        let reference = format!("{}@{}", pushed.repository, pushed.index.digest);
        let said = format!(
            "sign: {reference} and its {} image(s), {}",
            pushed.index.entries.len(),
            signer.describe()
        );
        let unsigned = format!(
            "{reference} is pushed but NOT signed (or not attested); run the release again to \
             sign it"
        );
        let mut steps = vec![Step::run_with(
            sign_command(signer, pushed.destination, &reference),
            move |runner, command, prefix| {
                eprintln!("{prefix}{said}");
                runner.run_prefixed(command, prefix).context(unsigned)
            },
        )];
        steps.extend(attest_steps(signer, &pushed)?);
        Ok(steps)
    }
}

/// A release as one registry holds it, and what is known of its build.
#[derive(Clone)]
pub struct PushedRelease<'a> {
    /// The engine that built it (its version goes in the provenance).
    pub engine: &'a crate::engine::Engine,
    pub release: &'a Release,
    /// The user's `--build-arg`s, where this run built it.
    pub build_args: &'a [String],
    pub destination: &'a Destination,
    /// `REGISTRY/NAME`.
    pub repository: String,
    pub index: RemoteIndex,
}

/// Each platform image's provenance and SBOM, written by this program (in
/// a directory that lives as long as the steps), then signed by cosign.
fn attest_steps<'a>(signer: &'a Signer, pushed: &PushedRelease<'a>) -> Result<Vec<Step<'a>>> {
    let directory = std::sync::Arc::new(crate::project::TemporaryDirectory::create(
        "rc-xtask-attest",
    )?);
    let mut steps = Vec::new();
    for (platform_text, digest) in &pushed.index.entries {
        let platform: Platform = platform_text
            .parse()
            .with_context(|| format!("the list holds an image for {platform_text}"))?;
        let reference = format!("{}@{digest}", pushed.repository);
        let stem = platform_text.replace('/', "-");
        let provenance = directory.path().join(format!("{stem}.provenance.json"));
        let sbom = directory.path().join(format!("{stem}.cdx.json"));
        let (written, release, build_args, engine) = (
            directory.clone(),
            pushed.release,
            pushed.build_args,
            pushed.engine,
        );
        let (provenance_file, sbom_file) = (provenance.clone(), sbom.clone());
        steps.push(Step::work(
            format!(
                "{platform}'s provenance and SBOM are written to {}",
                written.path().display()
            ),
            move |runner, _| {
                let builder = builder(runner, engine, release, build_args, platform);
                std::fs::write(
                    &provenance_file,
                    serde_json::to_vec_pretty(&attest::provenance(release, &builder, platform))?,
                )?;
                let metadata = attest::cargo_metadata(runner, release, platform)?;
                std::fs::write(
                    &sbom_file,
                    serde_json::to_vec_pretty(&attest::sbom(release, platform, &metadata)?)?,
                )?;
                drop(written);
                Ok(())
            },
        ));
        for (kind, predicate) in [(attest::PROVENANCE, &provenance), (attest::SBOM, &sbom)] {
            let kept = directory.clone();
            let command =
                attest::attest_command(signer, pushed.destination, kind, predicate, &reference);
            let unattested =
                format!("{reference} is pushed but NOT attested; run the release again to sign it");
            steps.push(Step::run_with(command, move |runner, command, prefix| {
                let ran = runner.run_prefixed(command, prefix).context(unattested);
                drop(kept);
                ran
            }));
        }
    }
    Ok(steps)
}

/// What the provenance says of `platform`'s build: this program, the
/// engine, the base images (by digest and image ID, and where the store
/// keeps the project's), the build arguments.
fn builder(
    runner: &Runner,
    engine: &crate::engine::Engine,
    release: &Release,
    build_args: &[String],
    platform: Platform,
) -> attest::Builder {
    attest::Builder {
        xtask_version: env!("CARGO_PKG_VERSION").to_owned(),
        podman_version: engine.version.to_string(),
        base_images: base_images(runner, engine, release, build_args, platform),
        build_args: build_args.to_vec(),
    }
}

/// The base images `platform`'s build of `release` took, as this storage
/// has them.
pub fn base_images(
    runner: &Runner,
    engine: &crate::engine::Engine,
    release: &Release,
    build_args: &[String],
    platform: Platform,
) -> Vec<attest::BaseImage> {
    let store = release
        .cache_repository()
        .map(|repository| repository.name());
    effective_base_images(&release.declared.base_images, build_args)
        .into_iter()
        .map(|(argument, image)| {
            let project =
                crate::base_images::project_image(&image, platform, engine.build_platform)
                    .ok()
                    .flatten();
            // The image this platform's build took: the architecture's, for
            // a list of the project's.
            let resolved = project.as_ref().map(|wanted| wanted.image.clone());
            let taken = resolved.clone().unwrap_or_else(|| image.clone());
            let read = |command| {
                runner
                    .read(&command)
                    .ok()
                    .map(|answer| answer.trim().to_owned())
            };
            attest::BaseImage {
                digest: read(crate::engine::podman::image_digest(&taken))
                    .filter(|digest| digest.starts_with("sha256:")),
                id: read(crate::engine::podman::image_id(&taken))
                    .filter(|id| !id.is_empty())
                    .map(|id| crate::engine::podman::image_id_of(&id)),
                kept: project
                    .as_ref()
                    .zip(store.as_deref())
                    .map(|(wanted, store)| crate::base_images::Store::reference_in(store, wanted)),
                resolved,
                argument,
                image,
            }
        })
        .collect()
}

/// The declared base images, each as the build took it: the user's own
/// `--build-arg NAME=IMAGE` replaces the declared one (pure).
fn effective_base_images(
    declared: &[crate::engine::podman::BuildArg],
    build_args: &[String],
) -> Vec<(String, String)> {
    declared
        .iter()
        .map(|base| {
            let given = build_args.iter().find_map(|argument| {
                let given: crate::engine::podman::BuildArg = argument.parse().ok()?;
                (given.name == base.name).then_some(given.value)
            });
            (
                base.name.clone(),
                given.unwrap_or_else(|| base.value.clone()),
            )
        })
        .collect()
}

/// The choice, from what is given (pure).
fn choose(flags: &SignFlags, oidc: bool, password: Vec<u8>) -> Signing {
    if flags.no_sign {
        return Signing::Off("--no-sign".to_owned());
    }
    match flags.signing_key.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() => Signing::Sign(Signer::Key {
            key: key.to_owned(),
            password,
        }),
        _ if oidc => Signing::Sign(Signer::Keyless),
        _ => Signing::Off(
            "no signing key (--signing-key or SIGNING_KEY) and no OIDC token (GitHub Actions \
             with `permissions: id-token: write`); pass --no-sign to say it is meant"
                .to_owned(),
        ),
    }
}

/// cosign is there, and the key opens with its password.
fn check(signer: &Signer, runner: &Runner, problems: &mut Vec<String>) {
    if which::which(PROGRAM).is_err() {
        problems.push(
            "signing needs cosign, which is not installed: run `cargo xtask setup` (it installs \
             Debian's package), or pass --no-sign"
                .to_owned(),
        );
        return;
    }
    let Signer::Key { key, password } = signer else {
        return;
    };
    if !key.contains("://") && !std::path::Path::new(key).is_file() {
        problems.push(format!(
            "--signing-key {key}: no such file; make a key pair with `cosign generate-key-pair` \
             (it writes cosign.key and cosign.pub) or pass --no-sign"
        ));
        return;
    }
    let mut open = Command::new(PROGRAM).args(["public-key", "--key", key]);
    open.stdin = Some(Stdin::Secret(password.clone()));
    if let Err(error) = runner.read(&open) {
        problems.push(format!(
            "the signing key {key} does not open: set {PASSWORD_VARIABLE} to its password \
             (cosign said: {})",
            crate::exec::last_line(&error)
        ));
    }
}

/// cosign's flags for a registry reached without TLS checks (a test
/// registry on loopback).
pub fn registry_flags(destination: &Destination) -> Vec<&'static str> {
    if destination.tls_verify {
        Vec::new()
    } else {
        vec!["--allow-insecure-registry", "--allow-http-registry"]
    }
}

/// With this run's logins: cosign reads podman's auth file.
pub(crate) fn with_logins(command: Command, destination: &Destination) -> Command {
    match &destination.authfile {
        Some(authfile) => command.env("REGISTRY_AUTH_FILE", authfile.to_string_lossy()),
        None => command,
    }
}

pub fn sign_command(signer: &Signer, destination: &Destination, reference: &str) -> Command {
    let command = Command::new(PROGRAM)
        .args(["sign", "--yes", "--recursive"])
        .args(registry_flags(destination));
    with_logins(signer.apply(command), destination).arg(reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Format;

    fn destination(tls_verify: bool) -> Destination {
        Destination {
            registry: "127.0.0.1:5000".into(),
            tls_verify,
            format: Format::Oci,
            authfile: Some("/tmp/rc-xtask-auth-1/auth.json".into()),
            skopeo_runtime_dir: None,
        }
    }

    #[test]
    fn the_provenance_names_the_base_image_the_build_took() {
        let declared = |name: &str, value: &str| crate::engine::podman::BuildArg {
            name: name.into(),
            value: value.into(),
        };
        let bases = [
            declared("RUNTIME_IMAGE", "localhost/rc-base/runtime:bookworm"),
            declared("BUILDER_IMAGE", "localhost/rc-base/rust-builder:1"),
        ];
        assert_eq!(
            effective_base_images(
                &bases,
                &[
                    "GREETING=a=b".into(),
                    "BUILDER_IMAGE=localhost/mine:2".into()
                ]
            ),
            [
                (
                    "RUNTIME_IMAGE".to_owned(),
                    "localhost/rc-base/runtime:bookworm".to_owned()
                ),
                ("BUILDER_IMAGE".to_owned(), "localhost/mine:2".to_owned())
            ]
        );
        // A project base stands for its architecture's image, kept in the
        // store under its definition.
        let wanted = crate::base_images::project_image(
            "localhost/rc-base/runtime:bookworm",
            Platform::LINUX_ARM64,
            Platform::LINUX_AMD64,
        )
        .unwrap()
        .unwrap();
        assert_eq!(wanted.image, "localhost/rc-base/runtime:bookworm-arm64");
        assert!(
            crate::base_images::Store::reference_in("127.0.0.1:5000/acme/layers", &wanted)
                .starts_with("127.0.0.1:5000/acme/layers:base-runtime-bookworm-arm64-")
        );
        assert_eq!(
            crate::base_images::project_image(
                "docker.io/library/debian:bookworm",
                Platform::LINUX_ARM64,
                Platform::LINUX_AMD64
            )
            .unwrap(),
            None
        );
    }

    fn flags(key: Option<&str>, no_sign: bool) -> SignFlags {
        SignFlags {
            signing_key: key.map(str::to_owned),
            no_sign,
        }
    }

    #[test]
    fn a_key_wins_then_oidc_and_otherwise_the_release_says_why_it_is_unsigned() {
        assert!(matches!(
            choose(&flags(Some("cosign.key"), false), true, b"pw".to_vec()),
            Signing::Sign(Signer::Key { key, .. }) if key == "cosign.key"
        ));
        assert_eq!(
            choose(&flags(None, false), true, Vec::new()),
            Signing::Sign(Signer::Keyless)
        );
        assert_eq!(
            choose(&flags(Some(" "), false), true, Vec::new()),
            Signing::Sign(Signer::Keyless),
            "an empty SIGNING_KEY is no key"
        );
        let Signing::Off(why) = choose(&flags(None, false), false, Vec::new()) else {
            panic!("nothing to sign with")
        };
        assert!(
            why.contains("--signing-key") && why.contains("id-token: write"),
            "{why}"
        );
        assert_eq!(
            choose(&flags(Some("cosign.key"), true), true, Vec::new()),
            Signing::Off("--no-sign".into())
        );
    }

    #[test]
    fn the_password_goes_on_stdin_and_nowhere_else() {
        let signer = Signer::Key {
            key: "cosign.key".into(),
            password: b"hunter2".to_vec(),
        };
        let command = sign_command(&signer, &destination(false), "127.0.0.1:5000/a@sha256:00");
        let shown = command.to_string();
        assert_eq!(
            shown,
            "REGISTRY_AUTH_FILE=/tmp/rc-xtask-auth-1/auth.json cosign sign --yes --recursive \
             --allow-insecure-registry --allow-http-registry --key cosign.key \
             --tlog-upload=false 127.0.0.1:5000/a@sha256:00 <(stdin)"
        );
        assert!(!format!("{command:?}{signer:?}").contains("hunter2"));
        assert_eq!(command.stdin, Some(Stdin::Secret(b"hunter2".to_vec())));
        assert!(command.kept_secret_variables.is_empty());
    }

    #[test]
    fn keyless_signing_alone_gets_the_oidc_variables() {
        let command = sign_command(&Signer::Keyless, &destination(true), "ghcr.io/a@sha256:00");
        assert_eq!(command.kept_secret_variables, OIDC_VARIABLES);
        assert!(command.stdin.is_none());
        assert!(!command.args.iter().any(|arg| arg == "--key"));
    }
}
