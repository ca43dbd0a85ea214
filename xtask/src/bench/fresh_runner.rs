//! Figures 7 and 8: a release on a fresh runner (an empty storage of its
//! own), with and without the registry cache, and against a warm machine.

use super::*;

/// A release of a one-line change on a fresh runner (an empty podman
/// storage, as every job of release.yml starts with; the registry holds the
/// release before it and its cache), from nothing to pushed and read back
/// (`build-and-push`, both platforms); the same without the cache (base
/// images made from the Debian archive, every layer built); and the same
/// release on a warm machine. In `--quick`, the fresh storage without the
/// cache is given the base images first, untimed (making them takes
/// minutes), so that only the layer cache is compared there.
pub(super) fn fresh_runner_figures(bench: &mut Bench) -> Result<Vec<Figure>> {
    let host = bench.registry.host();
    let (file, context) = (
        bench.workload.containerfile.to_string_lossy().into_owned(),
        bench.workload.context.to_string_lossy().into_owned(),
    );
    let (exe, clone) = (std::env::current_exe()?, bench.clone.clone());
    let build_args = bench.workload.build_args.clone();
    let release = |tag: &str, cache: bool| -> Command {
        let mut args = vec![
            "build-and-push",
            "--registry",
            &host,
            "--image",
            "rc-bench/fresh",
            "--tag",
            tag,
            "--tls-verify",
            "false",
            "--no-sign",
            "--file",
            &file,
            "--context",
            &context,
        ];
        if cache {
            args.push("--cache-repo");
        }
        Command::new(exe.to_string_lossy())
            .args(args)
            .args(build_args.iter().cloned())
            .current_dir(&clone)
    };
    // The release before: it fills the cache (its layers, the base images).
    bench.runner.run(&release("previous", true))?;
    bench.edit()?;
    bench.commit("bench: a release on a fresh runner")?;

    let cached = FreshStorage::new(bench.runner, "cached")?;
    let with_cache = bench.timed(&cached.applied(release("fresh-cached", true)))?;
    drop(cached);
    let uncached = FreshStorage::new(bench.runner, "uncached")?;
    if bench.quick {
        let engine = crate::engine::Engine::read(bench.runner)?;
        let archive = crate::lane::base_images_archive(bench.runner, engine)?;
        bench.runner.run(&uncached.applied(bench.xtask(&[
            "base-images",
            "--import",
            &archive.to_string_lossy(),
        ])))?;
    }
    let without_cache = bench.timed(&uncached.applied(release("fresh-uncached", false)))?;
    drop(uncached);
    let warm = bench.timed(&release("warm", false))?;
    Ok(figures(bench, with_cache, without_cache, warm))
}

/// 7 and 8 from the three releases' wall times.
fn figures(
    bench: &Bench,
    with_cache: Duration,
    without_cache: Duration,
    warm: Duration,
) -> Vec<Figure> {
    let what = if bench.quick {
        "the base images loaded first"
    } else {
        "base images made from the Debian archive, every layer built"
    };
    vec![
        Figure {
            name: "a release of a one-line change on a fresh runner (empty storage), with the \
                   registry cache / the same without it",
            numerator: format!(
                "build-and-push --cache-repo of {}, both platforms, from an empty storage to \
                 pushed and read back: {}",
                bench.workload.name,
                seconds(with_cache)
            ),
            denominator: format!(
                "the same without the cache ({what}): {}",
                seconds(without_cache)
            ),
            value: Some(with_cache.as_secs_f64() / without_cache.as_secs_f64()),
            target: Target::AtMost(0.25),
            runs: "1 each".into(),
        },
        Figure {
            name: "the same fresh-runner release, with the cache / the same release on a warm \
                   machine",
            numerator: format!("fresh runner, with the cache: {}", seconds(with_cache)),
            denominator: format!(
                "build-and-push of the same commit where the release before was built: {}",
                seconds(warm)
            ),
            value: Some(with_cache.as_secs_f64() / warm.as_secs_f64()),
            target: Target::AtMost(1.5),
            runs: "1 each".into(),
        },
    ]
}
