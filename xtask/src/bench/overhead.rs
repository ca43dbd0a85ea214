//! Figure 4: the xtask's build-and-push against the same podman commands
//! by hand, on a small image.

use super::*;

/// The tags of a release (figure 4): its version, its commit, `latest`.
const RELEASE_TAGS: &[&str] = &["v1.0.0", "0123abc", "latest"];

/// How far off the registry of figure 4's release rows is, each way: 20 ms
/// of round trip, a registry in the same region. (The one on loopback
/// answers in microseconds, which no registry a release goes to does.)
const REGISTRY_DELAY: Duration = Duration::from_millis(10);

/// Builds and pushes of the workload, through the xtask and by hand,
/// alternating; the medians compared. A `release` has three tags and goes
/// to the registry through a [`DelayedRelay`]; else one tag, on loopback.
pub(super) fn wrapper_overhead(
    bench: &Bench,
    small: &Workload,
    release: bool,
    cold: bool,
) -> Result<Figure> {
    let tags = if release { RELEASE_TAGS } else { &["t"] };
    let tag_list = tags.join(",");
    let relay = if release {
        Some(DelayedRelay::start(bench.registry.0.port, REGISTRY_DELAY)?)
    } else {
        None
    };
    let host = &relay
        .as_ref()
        .map_or_else(|| bench.registry.host(), DelayedRelay::host);
    let (file, context) = (
        small.containerfile.to_string_lossy().into_owned(),
        small.context.to_string_lossy().into_owned(),
    );
    let mut nonce = 0;
    let mut cold_cache = || -> Result<()> {
        if cold {
            nonce += 1;
            std::fs::write(
                &small.cache_key,
                format!("small image, cold build {nonce}\n"),
            )?;
        }
        Ok(())
    };
    let raw = RawCommands::from_dry_run(bench, &tag_list, &file, &context)?;
    let mut by_xtask = Vec::new();
    let mut by_hand = Vec::new();
    // One untimed round of each first: both start warm.
    for round in 0..=bench.runs {
        let xtask = bench.xtask(&[
            "build-and-push",
            "--registry",
            host,
            "--image",
            "rc-bench/wrapped",
            "--tag",
            &tag_list,
            "--tls-verify",
            "false",
            "--file",
            &file,
            "--context",
            &context,
        ]);
        cold_cache()?;
        let elapsed = bench.timed(&xtask)?;
        cold_cache()?;
        let start = Instant::now();
        raw.run(bench, host, tags)?;
        if round > 0 {
            by_xtask.push(elapsed);
            by_hand.push(start.elapsed());
        }
    }
    Ok(figure(
        (release, cold),
        &tag_list,
        (median(by_xtask), median(by_hand)),
        bench.runs,
    ))
}

/// The raw side: exactly the `podman build` the xtask runs (same labels,
/// annotations, timestamp, build arguments), as its dry run prints it, and
/// the list it makes, pushed by hand: the same work without the wrapper.
struct RawCommands {
    build: String,
    list: String,
}

impl RawCommands {
    fn from_dry_run(
        bench: &Bench,
        tag_list: &str,
        file: &str,
        context: &str,
    ) -> Result<RawCommands> {
        let plan = bench.runner.read(&bench.xtask(&[
            "build-image",
            "--dry-run",
            "--registry",
            "localhost",
            "--image",
            "rc-bench/raw",
            "--tag",
            tag_list,
            "--file",
            file,
            "--context",
            context,
        ]))?;
        let build = plan
            .lines()
            .find(|line| line.contains("podman build "))
            .context("the dry run printed no podman build")?;
        // Less the file the xtask reads the list's ID from: by hand, nobody
        // would write it (and the dry run did not make its directory).
        let build = without_option(build, "--iidfile");
        let list = build
            .split_whitespace()
            .skip_while(|word| *word != "--manifest")
            .nth(1)
            .context("the podman build has no --manifest")?
            .to_owned();
        Ok(RawCommands { build, list })
    }

    /// The build, then one push per tag, one after the other, as a script
    /// runs them.
    fn run(&self, bench: &Bench, host: &str, tags: &[&str]) -> Result<()> {
        if bench
            .runner
            .succeeds(&podman::manifest_exists(&self.list))?
        {
            bench.runner.run(&podman::manifest_remove(&self.list))?;
        }
        bench.runner.run(
            &Command::new("sh")
                .args(["-c", &self.build])
                .current_dir(&bench.clone),
        )?;
        for tag in tags {
            bench.runner.run(
                &Command::new(podman::PROGRAM)
                    .args([
                        "manifest",
                        "push",
                        "--all",
                        "--tls-verify=false",
                        &self.list,
                    ])
                    .arg(format!("docker://{host}/rc-bench/raw:{tag}")),
            )?;
        }
        Ok(())
    }
}

fn figure(
    (release, cold): (bool, bool),
    tag_list: &str,
    (xtask, hand): (Duration, Duration),
    runs: usize,
) -> Figure {
    Figure {
        name: match (release, cold) {
            (true, true) => "the xtask's build-and-push / the equivalent raw podman commands, on a small image: a release's three tags, registry 20 ms away (layers built)",
            (true, false) => "the same, a release's three tags, registry 20 ms away (warm cache)",
            (false, true) => "the same, one tag, registry on loopback (layers built)",
            (false, false) => "the same, one tag, registry on loopback (warm cache)",
        },
        numerator: format!(
            "cargo xtask build-and-push --tag {tag_list} ({}): {} (median)",
            if cold {
                "every layer built"
            } else {
                "warm cache"
            },
            seconds(xtask)
        ),
        denominator: format!(
            "the same podman build (from the xtask's dry run) + {}: {} (median)",
            if release {
                "a podman manifest push per tag"
            } else {
                "podman manifest push"
            },
            seconds(hand)
        ),
        value: Some(xtask.as_secs_f64() / hand.as_secs_f64()),
        target: Target::AtMost(if release { 1.03 } else { 1.10 }),
        runs: format!("{runs} each, alternating, after one warm-up"),
    }
}

/// `line` without `option` and the word after it.
pub(super) fn without_option(line: &str, option: &str) -> String {
    let mut words = Vec::new();
    let mut skip = false;
    for word in line.split(' ') {
        if skip {
            skip = false;
        } else if word == option {
            skip = true;
        } else {
            words.push(word);
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_and_its_value_come_out_of_a_command_line() {
        assert_eq!(
            without_option("podman build --iidfile /t/x.id --file F .", "--iidfile"),
            "podman build --file F ."
        );
        assert_eq!(
            without_option("podman build .", "--iidfile"),
            "podman build ."
        );
    }
}
