//! The registry layer cache, end to end. A release on a fresh storage (a
//! new CI runner's: no base images, no layers) takes the base images by
//! their definition's fingerprint and the dependency compile from the
//! registry that an earlier release filled; a cache that does not answer,
//! or that refuses the layers, makes a build slower and fails nothing.

mod support;

use support::{
    free_loopback_port, platforms_in_order, serial, xtask_in, FreshStorage, Registry,
    ServiceRepository, TaggedClone,
};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The line after the `STEP` line whose instruction contains `step`: what
/// podman says of where that step's layer came from.
fn after_step<'a>(output: &'a str, step: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(" STEP ") || line.starts_with("STEP "))
        .filter(|(_, line)| line.contains(step))
        .filter_map(|(at, _)| lines.get(at + 1).copied())
        .collect()
}

#[test]
fn a_fresh_storage_takes_the_base_images_and_the_dependency_compile_from_the_registry() {
    let _serial = serial();
    let registry = Registry::start("cache");
    let clone = TaggedClone::new("cache", "v4.0.0");
    let host = registry.host();
    let args = [
        "build-and-push",
        "--registry",
        &host,
        "--image",
        "acme/rc-web",
        "--tls-verify",
        "false",
        "--cache-repo",
        "--no-sign",
    ];

    // The first release fills the cache beside the image: its layers and
    // the base images it was built on.
    let first = xtask_in(&clone.path, &args, &[]);
    assert!(first.status.success(), "the first release failed");
    let kept = registry.tags("acme/rc-web-cache");
    for base in [
        "base-runtime-bookworm-amd64-",
        "base-runtime-bookworm-arm64-",
        "base-rust-builder-",
    ] {
        assert!(
            kept.iter().any(|tag| tag.starts_with(base)),
            "{base}* is not in the cache: {kept:?}"
        );
    }
    assert!(
        kept.iter()
            .any(|tag| tag.len() == 64 && tag.bytes().all(|byte| byte.is_ascii_hexdigit())),
        "no layer of the build is in the cache: {kept:?}"
    );

    // A new runner: an empty storage, the same release.
    let fresh = FreshStorage::new("cache");
    let env = fresh.env();
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let second = xtask_in(&clone.path, &args, &env);
    let log = stderr_of(&second);
    assert!(
        second.status.success(),
        "the release on a fresh storage failed"
    );
    assert!(
        log.contains("base-images: localhost/rc-base/rust-builder:bookworm taken from "),
        "the builder base was not taken from the registry"
    );
    assert!(
        !log.contains("from the Debian archive"),
        "a base image was built again"
    );
    let compile = after_step(&log, "mkdir -p rc-web/src xtask/src;");
    assert!(
        !compile.is_empty()
            && compile.iter().all(|line| {
                line.starts_with(&format!(
                    "--> Cache pulled from remote {host}/acme/rc-web-cache:"
                ))
            }),
        "the dependency compile was not taken from the registry cache: {compile:?}"
    );
    // What it released: both platforms under the release's tag, and the
    // images in the fresh storage (not the machine's).
    assert_eq!(
        platforms_in_order(&registry.index("acme/rc-web", "v4.0.0")),
        ["linux/amd64", "linux/arm64"]
    );
    let list = format!("{host}/acme/rc-web:v4.0.0");
    assert!(
        fresh
            .podman(&["manifest", "inspect", &list])
            .contains("arm64"),
        "the fresh storage has no list {list}"
    );
}

#[test]
fn a_cache_that_does_not_answer_or_refuses_the_layers_slows_the_build_and_fails_nothing() {
    let _serial = serial();
    let service = ServiceRepository::new("cache-refused", "v0.5.0");
    // The smallest image with a layer to cache: one RUN step, on Debian of
    // this platform (what the cache is about is the build's layers, not a
    // compile).
    let image = support::small_image_with_a_run_step(
        &service.path,
        "cache-refused-image",
        "cat /out/hello.txt",
    );
    let image_args = support::file_and_context(&image);
    // Names the local lists (and removes them when the test ends).
    let names = Registry::start("cache-names");
    let build = |cache: &str| {
        xtask_in(
            &service.path,
            &[
                &[
                    "build-image",
                    "--registry",
                    &names.host(),
                    "--cache-repo",
                    cache,
                    "--cache-tls-verify",
                    "false",
                ][..],
                &image_args.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
            &[],
        )
    };

    // Nothing answers at the cache's address: said, and built without it.
    let silent = format!(
        "127.0.0.1:{}/acme/hello-service-cache",
        free_loopback_port()
    );
    let output = build(&silent);
    let log = stderr_of(&output);
    assert!(
        output.status.success(),
        "an unreachable cache failed the build"
    );
    assert!(
        log.contains(&format!("the registry cache {silent} does not answer"))
            && log.contains("building without it: slower, not failed"),
        "the unreachable cache was not named"
    );
    assert!(
        !log.lines()
            .any(|line| line.contains("podman build") && line.contains("--cache-")),
        "a build was given the unreachable cache"
    );

    // A registry that wants a login this run does not have: the pull of
    // the cache misses, its push is refused, and the build runs again
    // without it. A new commit and a changed file, so there are new layers
    // to push.
    let locked = Registry::start_with_auth("cache-locked", Some(("acme", "s3cret-cache")));
    service.release_again("v0.5.1");
    std::fs::write(image.join("hello.txt"), "v0.5.1\n").unwrap();
    let output = build(&format!("{}/acme/hello-service-cache", locked.host()));
    let log = stderr_of(&output);
    assert!(
        output.status.success(),
        "a refused cache push failed the build"
    );
    assert!(
        log.contains("failed pushing cache to")
            && log.contains("the registry cache did not take this build's layers")
            && log.contains("building again without it: slower, not failed"),
        "the refused cache was not named"
    );
    assert!(
        locked.stored_tags("acme/hello-service-cache").is_empty(),
        "the registry took layers without the login"
    );
    let _ = std::fs::remove_dir_all(&image);
}
