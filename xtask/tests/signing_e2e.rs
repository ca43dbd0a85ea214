//! Signed releases, end to end, with a real registry on 127.0.0.1 and
//! Debian's cosign: a release signed with a key verifies with `cargo xtask
//! verify`, with `cosign verify` and with an independent client (skopeo
//! under a `sigstoreSigned` policy, as podman pulls would be checked); an
//! unsigned release, the wrong key, a tag moved to an unsigned list and an
//! attestation of another image are each refused; and the key's password
//! shows in no process's argv, in no child's environment and in no output.
//!
//! The releases build `support::small_image` (`--file`, `--context`): what
//! is signed and attested is the package (`fixtures/hello-service`: its
//! Cargo metadata makes the SBOM, its commit the provenance) and the pushed
//! digests, whatever the image holds.

mod support;

use std::path::Path;

use support::{file_and_context, run, scratch_dir, serial, xtask_in, Registry, ServiceRepository};

const IMAGE: &str = "acme/hello-service";

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn verify(reference: &str, public_key: &Path) -> (std::process::Output, serde_json::Value) {
    let output = xtask_in(
        &support::repository_root(),
        &[
            "verify",
            reference,
            "--key",
            public_key.to_str().unwrap(),
            "--tls-verify",
            "false",
            "--json",
        ],
        &[],
    );
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output, report)
}

fn failed_checks(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|check| check["passed"] == false)
        .map(|check| {
            format!(
                "{} {}: {}",
                check["what"], check["subject"], check["detail"]
            )
        })
        .collect()
}

/// skopeo under a policy that accepts only images signed with `public_key`
/// in `host` (podman and skopeo read the same policy.json and registries.d):
/// copies `reference` (a list with `--all`, or one image).
fn policy_copy(host: &str, public_key: &Path, reference: &str, all: bool) -> std::process::Output {
    let directory = scratch_dir("signing-policy");
    let policy = directory.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {host: [{
                "type": "sigstoreSigned",
                "keyPath": public_key,
                "signedIdentity": {"type": "matchRepository"},
            }]}},
        })
        .to_string(),
    )
    .unwrap();
    let registries_d = directory.join("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("loopback.yaml"),
        format!("docker:\n  {host}:\n    use-sigstore-attachments: true\n"),
    )
    .unwrap();
    let destination = format!("oci:{}", directory.join("copy").display());
    let mut args = vec![
        "--policy".to_owned(),
        policy.display().to_string(),
        "--registries.d".to_owned(),
        registries_d.display().to_string(),
        "copy".to_owned(),
        "--src-tls-verify=false".to_owned(),
        // Checked on the way in; an oci: layout cannot store them.
        "--remove-signatures".to_owned(),
    ];
    if all {
        args.push("--all".to_owned());
    }
    args.extend([format!("docker://{reference}"), destination]);
    let output = std::process::Command::new("skopeo")
        .args(&args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&directory);
    output
}

/// Debian 12 builds containers/image (podman 4.3, skopeo 1.9) without
/// sigstore: its policy check refuses every signed image with this. Debian
/// 13's (the podman 5 lane, where this test runs too) checks them.
const SIGSTORE_DISABLED: &str = "sigstore disabled";

/// Whether this machine's skopeo can check sigstore signatures at all; where
/// it cannot, it must be the Debian 12 build, which says so.
fn policy_checks_sigstore(refused: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&refused.stderr);
    if !stderr.contains(SIGSTORE_DISABLED) {
        return true;
    }
    let version = run("skopeo", &["--version"]);
    assert!(
        version.contains("version 1.9."),
        "only Debian 12's skopeo 1.9 is known to be built without sigstore: {version}"
    );
    eprintln!("{version}: built without sigstore; the policy checks run in the podman 5 lane");
    false
}

#[test]
fn a_signed_release_verifies_everywhere_and_tampering_is_refused() {
    let _serial = serial();
    let registry = Registry::start("signing");
    let host = registry.host();
    let service = ServiceRepository::new("signed", "v3.0.0");
    let image = support::small_image(&service.path, "signed-image");
    let image_args = file_and_context(&image);
    let image_args: Vec<&str> = image_args.iter().map(String::as_str).collect();
    let keys = scratch_dir("signing-keys");
    let password = format!("pw-{}-e2e", std::process::id());
    let (private_key, public_key) = support::key_pair(&keys.join("release"), &password);
    let (_, other_public_key) = support::key_pair(&keys.join("other"), "other");

    let signing_key = private_key.to_str().unwrap();
    let release = [
        &[
            "build-and-push",
            "--registry",
            &host,
            "--tls-verify",
            "false",
            "--signing-key",
            signing_key,
        ][..],
        &image_args,
    ]
    .concat();
    let with_password = [("COSIGN_PASSWORD", password.as_str())];

    // Its dry run prints the signing too (by what it cannot know yet).
    let planned = xtask_in(
        &service.path,
        &[&release[..], &["--dry-run"]].concat(),
        &with_password,
    );
    assert_eq!(planned.status.code(), Some(0), "{}", stderr_of(&planned));
    let planned = String::from_utf8_lossy(&planned.stdout).into_owned();
    assert_eq!(
        planned.matches("cosign sign --yes --recursive").count(),
        1,
        "{planned}"
    );
    assert_eq!(planned.matches("cosign attest ").count(), 4, "{planned}");
    assert!(!planned.contains(&password));

    // A signed release of both platforms; the password is scanned for.
    let (output, leaks, cosigns_seen) = support::xtask_scanned_for(
        &password,
        &service.path,
        &[&release[..], &["--json"]].concat(),
        &with_password,
        |line| line.starts_with("cosign "),
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(cosigns_seen > 0, "the scan ran while cosign signed");
    assert!(leaks.is_empty(), "the password leaked: {leaks:#?}");
    assert!(
        !stderr.contains(&password) && !String::from_utf8_lossy(&output.stdout).contains(&password),
        "the password is in the output"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["signed"], true, "{report}");
    assert!(
        stderr.contains("  signed:    the list, each image"),
        "{stderr}"
    );
    let list_digest = report["list_digest"].as_str().unwrap().to_owned();
    let platforms: Vec<(String, String)> = report["platforms"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(platform, digest)| (platform.clone(), digest.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(platforms.len(), 2);

    // `cargo xtask verify`: the list, both images, their provenance and SBOM.
    let tagged = format!("{host}/{IMAGE}:v3.0.0");
    let (verified, checks) = verify(&tagged, &public_key);
    assert_eq!(verified.status.code(), Some(0), "{}", stderr_of(&verified));
    assert_eq!(checks["verified"], true);
    assert_eq!(checks["list_digest"], list_digest.as_str());
    assert_eq!(
        checks["checks"].as_array().unwrap().len(),
        1 + 2 * 3,
        "{checks}"
    );
    for kind in ["signature", "provenance", "sbom"] {
        assert!(
            checks["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|check| check["what"] == kind && check["passed"] == true),
            "{kind}: {checks}"
        );
    }

    // Independent clients: cosign itself, and skopeo under a policy.
    for (_, digest) in &platforms {
        let reference = format!("{host}/{IMAGE}@{digest}");
        run(
            "cosign",
            &[
                "verify",
                "--key",
                public_key.to_str().unwrap(),
                "--insecure-ignore-tlog",
                "--allow-insecure-registry",
                "--allow-http-registry",
                &reference,
            ],
        );
    }
    let copied = policy_copy(&host, &public_key, &tagged, true);
    let policy_checks = policy_checks_sigstore(&copied);
    if policy_checks {
        assert!(
            copied.status.success(),
            "the policy refused the signed list: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        for (platform, digest) in &platforms {
            let copied = policy_copy(
                &host,
                &public_key,
                &format!("{host}/{IMAGE}@{digest}"),
                false,
            );
            assert!(
                copied.status.success(),
                "{platform}: the policy refused a signed image: {}",
                String::from_utf8_lossy(&copied.stderr)
            );
        }
    }
    // Refused by the policy, for the want of a good signature.
    let refused_by_policy = |reference: &str, key: &Path| {
        let copied = policy_copy(&host, key, reference, true);
        assert!(!copied.status.success(), "the policy took {reference}");
        if policy_checks {
            let stderr = String::from_utf8_lossy(&copied.stderr);
            assert!(stderr.contains("Source image rejected"), "{stderr}");
            assert!(!stderr.contains(SIGSTORE_DISABLED), "{stderr}");
        }
    };
    // The SBOM names the package (its Cargo metadata), the provenance the
    // commit and the declared bases by digest.
    let commit = run(
        "git",
        &["-C", service.path.to_str().unwrap(), "rev-parse", "HEAD"],
    );
    let commit = commit.trim();
    let statement = |kind: &str, digest: &str| -> serde_json::Value {
        let answer = run(
            "cosign",
            &[
                "verify-attestation",
                "--type",
                kind,
                "--key",
                public_key.to_str().unwrap(),
                "--insecure-ignore-tlog",
                "--allow-insecure-registry",
                "--allow-http-registry",
                &format!("{host}/{IMAGE}@{digest}"),
            ],
        );
        let envelope: serde_json::Value =
            serde_json::from_str(answer.lines().next().unwrap()).unwrap();
        serde_json::from_slice(&base64_decode(envelope["payload"].as_str().unwrap())).unwrap()
    };
    for (platform, digest) in &platforms {
        let provenance = statement("slsaprovenance1", digest);
        assert_eq!(
            provenance["subject"][0]["digest"]["sha256"],
            digest.trim_start_matches("sha256:")
        );
        let predicate = &provenance["predicate"];
        assert_eq!(
            predicate["buildDefinition"]["externalParameters"]["platform"],
            platform.as_str()
        );
        let dependencies = predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(
            dependencies[0]["digest"]["gitCommit"], commit,
            "{predicate}"
        );
        let builder_image = dependencies
            .iter()
            .find(|dependency| dependency["name"] == "BUILDER_IMAGE")
            .unwrap_or_else(|| panic!("no base image: {predicate}"));
        assert_eq!(
            builder_image["digest"]["sha256"].as_str().map(str::len),
            Some(64),
            "the base image's digest: {predicate}"
        );
        let podman_version = run("podman", &["version", "--format", "{{.Client.Version}}"]);
        assert_eq!(
            predicate["runDetails"]["builder"]["version"]["podman"],
            podman_version.trim()
        );
        let sbom = statement("cyclonedx", digest);
        let component = &sbom["predicate"]["metadata"]["component"];
        assert_eq!(component["name"], "hello-service", "{sbom}");
        assert_eq!(component["version"], "0.3.0");
        assert!(component["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|property| property["value"] == commit));
    }

    // The wrong key: refused.
    let (refused, checks) = verify(&tagged, &other_public_key);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    assert_eq!(failed_checks(&checks).len(), 7, "{checks}");
    refused_by_policy(&tagged, &other_public_key);

    // An attestation of one image put on another: signed, but about the
    // wrong digest.
    let (amd64, arm64) = (&platforms[0].1, &platforms[1].1);
    let attachment = |digest: &str| format!("{host}/{IMAGE}:{}.att", digest.replace(':', "-"));
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}", attachment(amd64)),
            &format!("docker://{}", attachment(arm64)),
        ],
    );
    let (refused, checks) = verify(&tagged, &public_key);
    assert_eq!(refused.status.code(), Some(1));
    let failed = failed_checks(&checks);
    // (cosign 2.5 refuses it itself; the xtask's own subject check is the
    // second line.)
    assert!(
        failed.iter().any(|check| check.contains("arm64")
            && (check.contains("not this image") || check.contains("no matching subject digest"))),
        "{failed:#?}"
    );

    // An unsigned release is refused by verify and by the policy.
    let unsigned = xtask_in(
        &service.path,
        &[
            &[
                "build-and-push",
                "--image",
                "acme/unsigned",
                "--platform",
                "linux/amd64",
                "--registry",
                &host,
                "--tls-verify",
                "false",
                "--no-sign",
            ][..],
            &image_args,
        ]
        .concat(),
        &[],
    );
    assert_eq!(unsigned.status.code(), Some(0), "{}", stderr_of(&unsigned));
    assert!(stderr_of(&unsigned).contains("NOT SIGNED: --no-sign"));
    let unsigned_tag = format!("{host}/acme/unsigned:v3.0.0");
    let (refused, _) = verify(&unsigned_tag, &public_key);
    assert_eq!(refused.status.code(), Some(1));
    let copied = policy_copy(&host, &public_key, &unsigned_tag, true);
    assert!(
        !copied.status.success(),
        "the policy took an unsigned image"
    );

    // The signed tag moved to that unsigned list: refused (the list is not
    // the one signed), while the signed list, by digest, still verifies.
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{unsigned_tag}"),
            &format!("docker://{tagged}"),
        ],
    );
    let (refused, checks) = verify(&tagged, &public_key);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        failed_checks(&checks)
            .iter()
            .any(|check| check.contains("signature") && check.contains("list")),
        "{checks}"
    );
    let _ = std::fs::remove_dir_all(&keys);
    let _ = std::fs::remove_dir_all(&image);
}

#[test]
fn a_key_that_does_not_open_is_refused_before_anything_is_built() {
    let _serial = serial();
    let registry = Registry::start("signing-refused");
    let host = registry.host();
    let service = ServiceRepository::new("signing-refused", "v3.1.0");
    let keys = scratch_dir("signing-refused-keys");
    let (private_key, _) = support::key_pair(&keys, "right");
    let lists_before = run("podman", &["images", "--format", "{{.ID}}"]);
    for (key, password, expected) in [
        (
            private_key.to_str().unwrap(),
            "wrong",
            "does not open: set COSIGN_PASSWORD",
        ),
        ("/nonexistent/cosign.key", "x", "no such file"),
    ] {
        let output = xtask_in(
            &service.path,
            &[
                "build-and-push",
                "--registry",
                &host,
                "--tls-verify",
                "false",
                "--signing-key",
                key,
            ],
            &[("COSIGN_PASSWORD", password)],
        );
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains("podman build"),
            "nothing was built: {stderr}"
        );
    }
    assert_eq!(
        run("podman", &["images", "--format", "{{.ID}}"]),
        lists_before
    );
    assert!(registry.stored_tags(IMAGE).is_empty());
    let _ = std::fs::remove_dir_all(&keys);
}

/// DSSE payloads are standard base64: coreutils decodes them.
fn base64_decode(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("base64")
        .arg("--decode")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}
