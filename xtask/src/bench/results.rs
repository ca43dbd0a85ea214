//! The results: the table, its rows, the machine they were measured on,
//! and the section of docs/benchmarks.md they replace.

use super::*;

pub(super) const RESULTS_BEGIN: &str =
    "<!-- bench results: written by `cargo xtask bench --output` -->";

pub(super) const RESULTS_END: &str = "<!-- end of bench results -->";

/// Replaces the results section of an existing document (keeping the method
/// around it), or makes a document of the results alone.
pub(super) fn splice_results(document: &str, results: &str) -> String {
    let section = format!("{RESULTS_BEGIN}\n{results}{RESULTS_END}");
    match (document.find(RESULTS_BEGIN), document.find(RESULTS_END)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{section}{}",
            &document[..begin],
            &document[end + RESULTS_END.len()..]
        ),
        _ => format!("{section}\n"),
    }
}

pub fn table(figures: &[Figure]) -> String {
    String::from("| figure | measured | target | verdict | numerator | denominator | runs |\n|---|---|---|---|---|---|---|\n")
        + &rows(figures, "")
}

/// The table's rows, each figure's name followed by `label` (the engine
/// of a lane's figures).
pub(super) fn rows(figures: &[Figure], label: &str) -> String {
    let mut text = String::new();
    for figure in figures {
        text.push_str(&format!(
            "| {}{label} | {} | {} | {} | {} | {} | {} |\n",
            figure.name,
            figure.value_text(),
            figure.target.text(),
            figure.verdict(),
            figure.numerator,
            figure.denominator,
            figure.runs
        ));
    }
    text
}

/// This machine, for the record.
/// How many images podman's storage holds (intermediate ones too).
pub(super) fn storage_size(runner: &Runner) -> String {
    runner
        .read(&Command::new(podman::PROGRAM).args(["images", "--all", "--quiet"]))
        .map(|ids| format!("{} images in podman's storage", ids.lines().count()))
        .unwrap_or_else(|_| "podman's storage size unknown".into())
}

pub fn machine(runner: &Runner) -> String {
    let mut system = sysinfo::System::new();
    system.refresh_cpu_all();
    system.refresh_memory();
    let cpu = system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_owned())
        .unwrap_or_default();
    let podman = runner
        .read(&podman::version())
        .map(|version| version.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{} {} ({}), {} logical CPUs ({cpu}), {:.0} GiB memory, podman {podman}",
        sysinfo::System::name().unwrap_or_default(),
        sysinfo::System::os_version().unwrap_or_default(),
        sysinfo::System::kernel_version().unwrap_or_default(),
        system.cpus().len(),
        system.total_memory() as f64 / (1u64 << 30) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_replace_only_their_section() {
        let document = format!("# Method\n\ntext\n\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\n\nmore\n");
        let spliced = splice_results(&document, "new\n");
        assert_eq!(
            spliced,
            format!("# Method\n\ntext\n\n{RESULTS_BEGIN}\nnew\n{RESULTS_END}\n\nmore\n")
        );
        assert!(splice_results("", "x\n").starts_with(RESULTS_BEGIN));
    }
}
