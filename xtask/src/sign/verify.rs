//! `verify IMAGE[:TAG]`: what a user of a release checks before trusting it.
//!
//! The tag is read from the registry (skopeo) to the list's digest and its
//! images' digests; then cosign checks, against the release's public key
//! (or, for a keyless release, the workflow's identity):
//!
//! - the list's signature and each platform image's own (a client pulling
//!   one platform checks that image's);
//! - each image's provenance and SBOM attestations: signed, and naming that
//!   image's own digest as their subject, and the commit the image says it
//!   was built from (its `org.opencontainers.image.revision` label).
//!
//! Every check is listed, passed or failed, in the output and in `--json`;
//! any failure exits 1.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{attest, registry_flags, PROGRAM};
use crate::{
    engine::Destination,
    exec::{Command, Runner},
    flags,
    flags::Format,
    registry,
};

/// Whom the signatures must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `cosign.pub` (or a KMS URI).
    Key(String),
    /// A keyless signer: the certificate's identity and OIDC issuer.
    Certificate { identity: String, issuer: String },
}

/// What to say when no identity was given and one is needed.
pub const NO_IDENTITY: &str = "say whose signatures to accept: --key cosign.pub (a release signed \
     with a key), or --certificate-identity and --certificate-oidc-issuer (a keyless release, \
     e.g. https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/v1.2.3 and \
     https://token.actions.githubusercontent.com)";

impl Identity {
    /// From the flags: `None` when none is given; a half-given keyless
    /// identity, or a key with one, is refused.
    pub fn of(flags: &flags::IdentityFlags) -> Result<Option<Identity>> {
        match (
            &flags.key,
            &flags.certificate_identity,
            &flags.certificate_oidc_issuer,
        ) {
            (None, None, None) => Ok(None),
            (Some(key), None, None) => Ok(Some(Identity::Key(key.clone()))),
            (None, Some(identity), Some(issuer)) => Ok(Some(Identity::Certificate {
                identity: identity.clone(),
                issuer: issuer.clone(),
            })),
            _ => Err(crate::BadInput(vec![NO_IDENTITY.to_owned()]).into()),
        }
    }

    fn apply(&self, command: Command) -> Command {
        match self {
            Identity::Key(key) => command.args(["--key", key, "--insecure-ignore-tlog"]),
            Identity::Certificate { identity, issuer } => command
                .args(["--certificate-identity", identity])
                .args(["--certificate-oidc-issuer", issuer]),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// `signature`, `provenance`, `sbom`.
    pub what: String,
    /// `repo@sha256:...`, with its platform for an image.
    pub subject: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Verification {
    pub image: String,
    pub list_digest: String,
    /// Platform to image digest.
    pub platforms: std::collections::BTreeMap<String, String>,
    pub checks: Vec<Check>,
    pub verified: bool,
}

/// `cosign verify` of `reference`, with `identity`.
pub fn verify_command(identity: &Identity, destination: &Destination, reference: &str) -> Command {
    identity
        .apply(
            Command::new(PROGRAM)
                .args(["verify", "--output", "json"])
                .args(registry_flags(destination)),
        )
        .arg(reference)
}

/// `cosign verify-attestation` of `reference`'s attestations of `kind`.
pub fn verify_attestation_command(
    identity: &Identity,
    destination: &Destination,
    kind: &str,
    reference: &str,
) -> Command {
    identity
        .apply(
            Command::new(PROGRAM)
                .args(["verify-attestation", "--type", kind])
                .args(registry_flags(destination)),
        )
        .arg(reference)
}

/// The digests cosign's answer to `verify` says were signed
/// (`critical.image.docker-manifest-digest` of each payload).
pub fn signed_digests(answer: &str) -> Vec<String> {
    let payloads: Vec<serde_json::Value> = answer
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .flat_map(|value| match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        })
        .collect();
    payloads
        .iter()
        .filter_map(|payload| {
            payload["critical"]["image"]["docker-manifest-digest"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

impl flags::Verify {
    pub fn run(self) -> Result<crate::Status> {
        let runner = Runner::new(false);
        let Some(identity) = Identity::of(&self.release.identity)? else {
            return Err(crate::BadInput(vec![NO_IDENTITY.to_owned()]).into());
        };
        if which::which(PROGRAM).is_err() {
            return Err(crate::BadInput(vec![
                "verify needs cosign, which is not installed: run `cargo xtask setup`".to_owned(),
            ])
            .into());
        }
        let (repository, registry) = split_reference(&self.release.image)?;
        let destination = Destination {
            registry,
            tls_verify: self.release.tls_verify,
            format: Format::Oci,
            authfile: None,
            skopeo_runtime_dir: None,
        };
        let verification = verify(
            &runner,
            &identity,
            &destination,
            &repository,
            &self.release.image,
        )?;
        if self.release.json {
            println!("{}", serde_json::to_string_pretty(&verification)?);
        }
        eprintln!(
            "\nverify: {} ({})",
            verification.image, verification.list_digest
        );
        for check in &verification.checks {
            eprintln!(
                "  {} {:<10} {}: {}",
                if check.passed { "ok    " } else { "FAILED" },
                check.what,
                check.subject,
                check.detail
            );
        }
        if !verification.verified {
            bail!(
                "{} is NOT verified: {} of {} checks failed (above)",
                self.release.image,
                verification
                    .checks
                    .iter()
                    .filter(|check| !check.passed)
                    .count(),
                verification.checks.len()
            );
        }
        eprintln!("verify: every signature and attestation checks out");
        Ok(crate::Status::Success)
    }
}

/// `ghcr.io/acme/app:v1` -> (`ghcr.io/acme/app`, `ghcr.io`).
pub fn split_reference(image: &str) -> Result<(String, String)> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').unwrap_or(0);
    let repository = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let Some((registry, _)) = repository.split_once('/') else {
        return Err(crate::BadInput(vec![format!(
            "{image}: name the registry too, e.g. ghcr.io/acme/app:v1.2.3"
        )])
        .into());
    };
    Ok((repository.to_owned(), registry.to_owned()))
}

pub fn verify(
    runner: &Runner,
    identity: &Identity,
    destination: &Destination,
    repository: &str,
    image: &str,
) -> Result<Verification> {
    let index = registry::read_index(runner, destination, image)
        .with_context(|| format!("cannot read {image}: is it a release (a manifest list)?"))?;
    let mut checks = Vec::new();
    let list = format!("{repository}@{}", index.digest);
    checks.push(check_signature(
        runner,
        identity,
        destination,
        &list,
        &index.digest,
        "list",
    ));
    for (platform, digest) in &index.entries {
        let reference = format!("{repository}@{digest}");
        checks.push(check_signature(
            runner,
            identity,
            destination,
            &reference,
            digest,
            platform,
        ));
        checks.extend(attest::check_attestations(
            runner,
            identity,
            destination,
            &reference,
            digest,
            platform,
        ));
    }
    let verified = checks.iter().all(|check| check.passed);
    Ok(Verification {
        image: image.to_owned(),
        list_digest: index.digest.clone(),
        platforms: index.entries.iter().cloned().collect(),
        checks,
        verified,
    })
}

fn check_signature(
    runner: &Runner,
    identity: &Identity,
    destination: &Destination,
    reference: &str,
    digest: &str,
    what: &str,
) -> Check {
    let (passed, detail) = match runner.read(&verify_command(identity, destination, reference)) {
        Ok(answer)
            if signed_digests(&answer)
                .iter()
                .any(|signed| signed == digest) =>
        {
            (true, "signed".to_owned())
        }
        Ok(_) => (false, "the signature names another digest".to_owned()),
        Err(error) => (false, crate::exec::last_line(&error)),
    };
    Check {
        what: "signature".to_owned(),
        subject: format!("{what} {reference}"),
        passed,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_its_repository_and_registry() {
        assert_eq!(
            split_reference("127.0.0.1:5000/acme/app:v1").unwrap(),
            ("127.0.0.1:5000/acme/app".into(), "127.0.0.1:5000".into())
        );
        assert_eq!(
            split_reference("ghcr.io/acme/app@sha256:00").unwrap(),
            ("ghcr.io/acme/app".into(), "ghcr.io".into())
        );
        assert_eq!(
            split_reference("ghcr.io/acme/app").unwrap().0,
            "ghcr.io/acme/app"
        );
        assert!(split_reference("app:v1").is_err());
    }

    #[test]
    fn the_signed_digest_is_read_from_cosigns_answer() {
        let answer = r#"[{"critical":{"identity":{"docker-reference":"r/a"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"cosign container image signature"},"optional":null}]"#;
        assert_eq!(signed_digests(answer), ["sha256:aa"]);
        assert!(signed_digests("not json").is_empty());
    }

    #[test]
    fn verifying_with_a_key_needs_no_transparency_log() {
        let destination = Destination {
            registry: "127.0.0.1:5000".into(),
            tls_verify: false,
            format: Format::Oci,
            authfile: None,
            skopeo_runtime_dir: None,
        };
        assert_eq!(
            verify_command(
                &Identity::Key("cosign.pub".into()),
                &destination,
                "r/a@sha256:aa"
            )
            .to_string(),
            "cosign verify --output json --allow-insecure-registry --allow-http-registry \
             --key cosign.pub --insecure-ignore-tlog r/a@sha256:aa"
        );
    }
}
