//! Disk space: where podman keeps its storage, how much is free there, how
//! much podman uses, and what each kind of build needs (the table in
//! docs/multi-platform-builds.md). Free space is measured with sysinfo, never
//! by parsing `df`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub mod usage;

use crate::{
    engine::{local_list::process_exists, podman, storage, Engine},
    exec::Runner,
    platform::{Arch, Platform},
};

const GB: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildKind {
    Amd64,
    Arm64,
    MultiPlatform,
    WithCleanup,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Requirement {
    pub kind: BuildKind,
    pub description: &'static str,
    pub minimum_gb: u64,
    pub recommended_gb: u64,
}

/// From the project's original build guide; the build stops below the minimum.
pub const REQUIREMENTS: [Requirement; 4] = [
    Requirement {
        kind: BuildKind::Amd64,
        description: "single platform (amd64)",
        minimum_gb: 8,
        recommended_gb: 12,
    },
    Requirement {
        kind: BuildKind::Arm64,
        description: "single platform (arm64)",
        minimum_gb: 10,
        recommended_gb: 15,
    },
    Requirement {
        kind: BuildKind::MultiPlatform,
        description: "multi-platform",
        minimum_gb: 15,
        recommended_gb: 20,
    },
    Requirement {
        kind: BuildKind::WithCleanup,
        description: "with cleanup (--clean)",
        minimum_gb: 6,
        recommended_gb: 10,
    },
];

impl BuildKind {
    pub fn for_build(platforms: &[Platform], with_cleanup: bool) -> BuildKind {
        match platforms {
            _ if with_cleanup => BuildKind::WithCleanup,
            [only] if only.arch == Arch::Amd64 => BuildKind::Amd64,
            [only] if only.arch == Arch::Arm64 => BuildKind::Arm64,
            _ => BuildKind::MultiPlatform,
        }
    }

    pub fn requirement(self) -> Requirement {
        *REQUIREMENTS
            .iter()
            .find(|requirement| requirement.kind == self)
            .expect("every kind is in the table")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    BelowRecommended,
    BelowMinimum,
}

pub fn verdict(available_bytes: u64, requirement: &Requirement) -> Verdict {
    if available_bytes < requirement.minimum_gb * GB {
        Verdict::BelowMinimum
    } else if available_bytes < requirement.recommended_gb * GB {
        Verdict::BelowRecommended
    } else {
        Verdict::Ok
    }
}

/// Where podman's storage is and the filesystem around it.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSpace {
    pub graph_root: PathBuf,
    /// Mount point of the filesystem holding it; `None` when it is in a VM.
    pub mount_point: Option<PathBuf>,
    pub available_bytes: u64,
    pub total_bytes: u64,
    /// How the figures were obtained.
    pub measured_by: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineDisk {
    pub name: String,
    pub disk_size_gib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub storage: StorageSpace,
    /// Bytes on disk, each layer once.
    pub usage: Usage,
    /// `podman system df`'s own figures, beside ours: up to podman 4.3 it
    /// counts a layer once for every image that shares it.
    pub podman_usage: podman::PodmanUsage,
    pub podman_machine: Option<MachineDisk>,
    pub recommendations: Vec<(Requirement, Verdict)>,
}

/// What the storage holds, in bytes on disk with each layer counted once.
/// A figure an engine cannot give is `None`, and `note` says why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Where the figures come from.
    pub measured_by: String,
    /// Everything the storage's layers and images occupy.
    pub on_disk_bytes: Option<u64>,
    /// The layers images use, and their metadata.
    pub images_bytes: Option<u64>,
    /// Of the images' bytes: what manifest lists, tagged images and the
    /// images containers use hold, with every layer under them (what
    /// `clean-build-cache` keeps).
    pub kept_bytes: Option<u64>,
    /// Of the images' bytes: the build cache, which `clean-build-cache` frees.
    pub clean_frees_bytes: Option<u64>,
    /// Containers' own layers (buildah's working containers among them).
    pub containers_bytes: Option<u64>,
    /// Layers nothing uses (left by an interrupted pull or build).
    pub other_layers_bytes: Option<u64>,
    /// How many images the storage holds (manifest lists included).
    pub images: Option<usize>,
    pub note: Option<String>,
}

impl Usage {
    const RECORDS: &'static str = "the storage's own records, containers/storage's";

    pub fn from_records(accounting: usage::Accounting) -> Usage {
        Usage {
            measured_by: Usage::RECORDS.to_owned(),
            on_disk_bytes: Some(accounting.on_disk_bytes),
            images_bytes: Some(accounting.images_bytes),
            kept_bytes: Some(accounting.kept_bytes),
            clean_frees_bytes: Some(accounting.clean_frees_bytes),
            containers_bytes: Some(accounting.containers_bytes),
            other_layers_bytes: Some(accounting.other_layers_bytes),
            images: Some(accounting.images),
            note: (accounting.unmeasured_layers > 0).then(|| {
                format!(
                    "{} layers have no recorded size yet (being written?) and count as 0",
                    accounting.unmeasured_layers
                )
            }),
        }
    }

    /// From `podman system df` alone: where the storage's records are not on
    /// this machine (a remote engine) or cannot be read. podman 4.4 and later
    /// count each layer once there; 4.3 once per image, which is no measure.
    pub fn from_podman(podman: &podman::PodmanUsage, engine: &Engine, why: &str) -> Usage {
        let clean = crate::project::as_invoked(
            "what a clean frees is not counted here: `cargo xtask clean-build-cache --dry-run` \
             lists it",
        );
        if engine.system_df_counts_each_layer_once() {
            return Usage {
                measured_by: format!("podman system df (podman {}; {why})", engine.version),
                on_disk_bytes: Some(podman.images_bytes + podman.containers_bytes),
                images_bytes: Some(podman.images_bytes),
                containers_bytes: Some(podman.containers_bytes),
                note: Some(clean.to_owned()),
                ..Usage::default()
            };
        }
        Usage {
            measured_by: format!("nothing ({why})"),
            note: Some(format!(
                "podman {} counts a layer once for every image that shares it, so its figures \
                 are not bytes on disk, and the storage's records cannot be read here; podman \
                 4.4 or later gives them; {clean}",
                engine.version
            )),
            ..Usage::default()
        }
    }
}

/// The mount point that contains `path`: the longest mount-point prefix.
pub fn containing_mount<'a>(
    path: &Path,
    mount_points: impl IntoIterator<Item = &'a Path>,
) -> Option<&'a Path> {
    mount_points
        .into_iter()
        .filter(|mount| path.starts_with(mount))
        .max_by_key(|mount| mount.components().count())
}

/// Free space where podman keeps images. On Linux with local podman, sysinfo
/// measures the filesystem; where podman runs in a VM (macOS), podman reports
/// the VM's figures itself.
pub fn storage_space(info: &crate::engine::info::Info, engine: &Engine) -> Result<StorageSpace> {
    let graph_root = info.store.graph_root.clone();
    if engine.shares_this_host() {
        let disks = sysinfo::Disks::new_with_refreshed_list();
        let existing = graph_root
            .ancestors()
            .find(|ancestor| ancestor.exists())
            .unwrap_or(Path::new("/"));
        let resolved = existing
            .canonicalize()
            .unwrap_or_else(|_| existing.to_path_buf());
        let mount = containing_mount(&resolved, disks.iter().map(|disk| disk.mount_point()))
            .with_context(|| format!("no mounted filesystem holds {}", graph_root.display()))?
            .to_path_buf();
        let disk = disks
            .iter()
            .find(|disk| disk.mount_point() == mount)
            .expect("mount came from this list");
        return Ok(StorageSpace {
            graph_root,
            mount_point: Some(mount),
            available_bytes: disk.available_space(),
            total_bytes: disk.total_space(),
            measured_by: "sysinfo",
        });
    }
    let total = info
        .store
        .graph_root_allocated
        .context("podman does not report its storage size")?;
    let used = info.store.graph_root_used.unwrap_or(0);
    Ok(StorageSpace {
        graph_root,
        mount_point: None,
        available_bytes: total.saturating_sub(used),
        total_bytes: total,
        measured_by: "podman info (the engine's own figures: a remote engine, or podman machine)",
    })
}

fn podman_machine(runner: &Runner, engine: &Engine) -> Option<MachineDisk> {
    if engine.shares_this_host() {
        return None;
    }
    let json = runner.read(&podman::machine_inspect()).ok()?;
    let (name, disk_size_gib) = podman::parse_machine_disk(&json)?;
    Some(MachineDisk {
        name,
        disk_size_gib,
    })
}

/// The storage's records, where they are on this machine; `None` for a
/// remote engine.
fn records(runner: &Runner, engine: &Engine) -> Option<Result<storage::Records>> {
    if !engine.shares_this_host() {
        return None;
    }
    Some(crate::engine::info::Info::read(runner).and_then(|info| {
        storage::Store::new(&info.store.graph_root, &info.store.graph_driver_name).read()
    }))
}

/// Free space where podman keeps its storage (what `clean-build-cache`
/// measures before and after).
pub fn free_space(runner: &Runner) -> Result<StorageSpace> {
    storage_space(
        crate::engine::info::Info::read(runner)?,
        Engine::read(runner)?,
    )
}

pub fn report(runner: &Runner) -> Result<Report> {
    // `podman system df` takes a quarter second on a busy storage, reading
    // the records as long as they take to parse: both at once.
    let (podman_usage, engine, records) = std::thread::scope(|scope| {
        let podman_usage =
            scope.spawn(|| podman::parse_podman_usage(&runner.read(&podman::system_df())?));
        let engine = Engine::read(runner);
        let records = engine
            .as_ref()
            .ok()
            .and_then(|engine| records(runner, engine));
        (podman_usage.join(), engine, records)
    });
    let engine = engine?;
    let podman_usage =
        podman_usage.map_err(|_| anyhow::anyhow!("`podman system df` panicked"))??;
    let usage = match records {
        Some(Ok(records)) => Usage::from_records(usage::account(&records, &process_exists)),
        Some(Err(error)) => Usage::from_podman(&podman_usage, engine, &format!("{error:#}")),
        None => Usage::from_podman(
            &podman_usage,
            engine,
            "a remote engine: its storage is not on this machine",
        ),
    };
    let storage = storage_space(crate::engine::info::Info::read(runner)?, engine)?;
    let recommendations = REQUIREMENTS
        .iter()
        .map(|requirement| (*requirement, verdict(storage.available_bytes, requirement)))
        .collect();
    Ok(Report {
        storage,
        usage,
        podman_usage,
        podman_machine: podman_machine(runner, engine),
        recommendations,
    })
}

/// `1.5 GB`: decimal units, as the requirement table uses.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn print_usage(usage: &Usage, podman: &podman::PodmanUsage) {
    let bytes = |figure: Option<u64>| figure.map_or_else(|| "unknown".to_owned(), format_bytes);
    match usage.on_disk_bytes {
        Some(on_disk) => println!(
            "on disk:        {}, each layer once (from {})",
            format_bytes(on_disk),
            usage.measured_by
        ),
        None => println!("on disk:        unknown (from {})", usage.measured_by),
    }
    if let Some(images) = usage.images_bytes {
        let count = usage.images.map(|count| format!("{count} "));
        println!(
            "  images:       {} in {}images",
            format_bytes(images),
            count.unwrap_or_default()
        );
    }
    if usage.kept_bytes.is_some() || usage.clean_frees_bytes.is_some() {
        println!(
            "    kept:       {} (manifest lists, tagged images, images containers use, and \
             the layers under them)",
            bytes(usage.kept_bytes)
        );
        println!(
            "    cache:      {} (the build cache: what `{} clean-build-cache` frees)",
            bytes(usage.clean_frees_bytes),
            crate::project::command_name()
        );
    }
    if let Some(containers) = usage.containers_bytes {
        println!("  containers:   {}", format_bytes(containers));
    }
    if let Some(other) = usage.other_layers_bytes.filter(|other| *other > 0) {
        println!(
            "  other layers: {} (nothing uses them)",
            format_bytes(other)
        );
    }
    println!("  volumes:      {}", format_bytes(podman.volumes_bytes));
    if let Some(note) = &usage.note {
        println!("  note:         {note}");
    }
    println!(
        "podman's own:   images {}, {} reclaimable (podman system df; up to podman 4.3 a \
         layer counts once for every image that shares it)",
        format_bytes(podman.images_bytes),
        format_bytes(podman.reclaimable_bytes)
    );
}

pub fn print_report(report: &Report) {
    let storage = &report.storage;
    println!("podman storage: {}", storage.graph_root.display());
    if let Some(mount) = &storage.mount_point {
        println!(
            "filesystem:     {} ({})",
            mount.display(),
            storage.measured_by
        );
    }
    println!(
        "free:           {} of {}",
        format_bytes(storage.available_bytes),
        format_bytes(storage.total_bytes)
    );
    print_usage(&report.usage, &report.podman_usage);
    if let Some(machine) = &report.podman_machine {
        println!(
            "podman machine: {} with a {} GiB disk",
            machine.name, machine.disk_size_gib
        );
    }
    println!(
        "\n{:<26} {:>8} {:>12}  status",
        "build", "minimum", "recommended"
    );
    for (requirement, verdict) in &report.recommendations {
        let status = match verdict {
            Verdict::Ok => "ok",
            Verdict::BelowRecommended => "below recommended",
            Verdict::BelowMinimum => "BELOW MINIMUM",
        };
        println!(
            "{:<26} {:>5} GB {:>9} GB  {status}",
            requirement.description, requirement.minimum_gb, requirement.recommended_gb
        );
    }
}

/// The check `build-image` runs first: stops below the minimum unless forced.
pub fn check_before_build(
    runner: &Runner,
    engine: &Engine,
    kind: BuildKind,
    force: bool,
) -> Result<()> {
    let storage = storage_space(crate::engine::info::Info::read(runner)?, engine)?;
    let requirement = kind.requirement();
    let free = format_bytes(storage.available_bytes);
    match verdict(storage.available_bytes, &requirement) {
        Verdict::Ok => Ok(()),
        Verdict::BelowRecommended => {
            eprintln!(
                "disk: warning: {free} free for podman storage; a {} build is recommended {} GB",
                requirement.description, requirement.recommended_gb
            );
            Ok(())
        }
        Verdict::BelowMinimum if force => {
            eprintln!("disk: warning: {free} free, below the {} GB minimum; continuing because of --force", requirement.minimum_gb);
            Ok(())
        }
        Verdict::BelowMinimum => Err(crate::BadInput(vec![format!(
            "only {free} free for podman storage ({}), below the {} GB minimum for a {} build; \
             free space with `cargo xtask clean-build-cache`, build one platform at a time \
             (BUILD_PLATFORMS=linux/amd64), or pass --force to try anyway",
            storage.graph_root.display(),
            requirement.minimum_gb,
            requirement.description
        )])
        .into()),
    }
}

impl crate::flags::CheckDiskSpace {
    pub fn run(self) -> Result<()> {
        let report = report(&Runner::new(false))?;
        if self.json {
            let recommendations: Vec<serde_json::Value> = report
                .recommendations
                .iter()
                .map(|(requirement, verdict)| {
                    serde_json::json!({
                        "build": requirement.kind,
                        "description": requirement.description,
                        "minimum_gb": requirement.minimum_gb,
                        "recommended_gb": requirement.recommended_gb,
                        "status": verdict,
                    })
                })
                .collect();
            let json = serde_json::json!({
                "storage": report.storage,
                "usage": report.usage,
                "podman_usage": report.podman_usage,
                "podman_machine": report.podman_machine,
                "recommendations": recommendations,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print_report(&report);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_kinds_follow_the_platforms() {
        assert_eq!(
            BuildKind::for_build(&[Platform::LINUX_AMD64], false),
            BuildKind::Amd64
        );
        assert_eq!(
            BuildKind::for_build(&[Platform::LINUX_ARM64], false),
            BuildKind::Arm64
        );
        assert_eq!(
            BuildKind::for_build(&[Platform::LINUX_AMD64, Platform::LINUX_ARM64], false),
            BuildKind::MultiPlatform
        );
        assert_eq!(
            BuildKind::for_build(&[Platform::LINUX_ARM64], true),
            BuildKind::WithCleanup
        );
    }

    #[test]
    fn the_table_matches_the_guide() {
        let figures: Vec<_> = REQUIREMENTS
            .iter()
            .map(|r| (r.minimum_gb, r.recommended_gb))
            .collect();
        assert_eq!(figures, [(8, 12), (10, 15), (15, 20), (6, 10)]);
    }

    #[test]
    fn verdicts_use_minimum_and_recommended() {
        let multi = BuildKind::MultiPlatform.requirement();
        assert_eq!(verdict(14 * GB, &multi), Verdict::BelowMinimum);
        assert_eq!(verdict(15 * GB, &multi), Verdict::BelowRecommended);
        assert_eq!(verdict(20 * GB, &multi), Verdict::Ok);
    }

    #[test]
    fn the_longest_mount_prefix_holds_the_path() {
        let mounts = [
            Path::new("/"),
            Path::new("/var"),
            Path::new("/var/lib/containers"),
            Path::new("/variant"),
        ];
        let found = containing_mount(
            Path::new("/var/lib/containers/storage"),
            mounts.iter().copied(),
        );
        assert_eq!(found, Some(Path::new("/var/lib/containers")));
        assert_eq!(
            containing_mount(Path::new("/variant/x"), mounts.iter().copied()),
            Some(Path::new("/variant"))
        );
        assert_eq!(
            containing_mount(Path::new("/home"), mounts.iter().copied()),
            Some(Path::new("/"))
        );
    }

    #[test]
    fn sizes_are_formatted_in_decimal_units() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(format_bytes(20_000_000_000), "20.0 GB");
    }
}
