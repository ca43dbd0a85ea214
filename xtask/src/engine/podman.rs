//! Podman's command line. Only this module knows podman's flags; every
//! function builds a [`Command`] and spawns nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    exec::{Command, Stdin},
    platform::{self, Arch, Platform},
};

pub const PROGRAM: &str = "podman";

/// The reproducible-builds variable for "the date of every timestamp".
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

fn podman() -> Command {
    Command::new(PROGRAM)
}

/// `NAME=VALUE` for `--build-arg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArg {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for BuildArg {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<BuildArg> {
        let Some((name, value)) = text.split_once('=') else {
            bail!("build argument {text:?} has no '='; write it as NAME=VALUE (NAME= for an empty value)");
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            bail!("build argument {text:?}: {name:?} is not a valid ARG name (letters, digits, _)");
        }
        Ok(BuildArg {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// One `podman build` invocation that adds its images to a manifest list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub containerfile: PathBuf,
    pub context: PathBuf,
    /// The context's ignore file, when not its own `.containerignore`.
    pub ignorefile: Option<PathBuf>,
    pub platforms: Vec<Platform>,
    /// The platform podman runs on. Passed as `BUILDPLATFORM` because podman
    /// 4.3 does not predefine it, and `FROM --platform=$BUILDPLATFORM` would
    /// otherwise silently fall back to the target platform (under emulation).
    pub build_platform: Platform,
    pub manifest: String,
    /// The stage to stop at (`--target`); `None` builds the last one.
    pub target: Option<String>,
    pub build_args: Vec<BuildArg>,
    /// `host:container[:options]` mounts for RUN steps (the host CA bundle).
    pub volumes: Vec<String>,
    /// Set both as image labels and as manifest annotations. The labels go in
    /// one `LABEL` instruction read after the Containerfile (`--file -`):
    /// podman 4.3 makes every `--label` a step of its own, committed per
    /// platform in every build (40 to 100 ms each here).
    pub labels: Vec<(String, String)>,
    /// Seconds since the epoch for every timestamp podman writes (the image's
    /// creation, its history, and the files in its layers): reproducible digests.
    pub timestamp: Option<i64>,
    /// Build every step again instead of using cached layers.
    pub no_cache: bool,
    /// A registry layer cache to read and write (see [`LayerCache`]).
    pub cache: Option<LayerCache>,
    /// Where podman writes the image ID of the list (`--iidfile`; with
    /// `--manifest` it is the list's ID, for one platform or several).
    pub iid_file: Option<PathBuf>,
}

impl Build {
    pub fn command(&self) -> Command {
        let mut command = podman()
            .arg("build")
            .arg("--platform")
            .arg(platform::join(&self.platforms))
            .arg("--manifest")
            .arg(&self.manifest)
            .args(
                self.target
                    .iter()
                    .flat_map(|target| ["--target", target.as_str()]),
            )
            .arg("--file")
            .arg(path_text(&self.containerfile));
        if let Some(ignorefile) = &self.ignorefile {
            command = command.arg("--ignorefile").arg(path_text(ignorefile));
        }
        let (instruction, flags) = label_instruction(&self.labels);
        if let Some(instruction) = instruction {
            command = command.arg("--file").arg("-");
            command.stdin = Some(Stdin::Text(instruction));
        }
        command = command
            .arg("--build-arg")
            .arg(format!("BUILDPLATFORM={}", self.build_platform));
        for build_arg in &self.build_args {
            command = command
                .arg("--build-arg")
                .arg(format!("{}={}", build_arg.name, build_arg.value));
        }
        for volume in &self.volumes {
            command = command.arg("--volume").arg(volume);
        }
        for (key, value) in flags {
            command = command.arg("--label").arg(format!("{key}={value}"));
        }
        for (key, value) in &self.labels {
            command = command.arg("--annotation").arg(format!("{key}={value}"));
        }
        if let Some(timestamp) = self.timestamp {
            // podman 5.6 and later turn an exported SOURCE_DATE_EPOCH into
            // `--source-date-epoch`, and refuse it beside `--timestamp`
            // ("would be ambiguous"). The date is ours to give (the commit's,
            // or SOURCE_DATE_EPOCH's own value: see `Release::read`), so
            // podman never sees the variable, on any version.
            command = command
                .arg("--timestamp")
                .arg(timestamp.to_string())
                .env_remove(SOURCE_DATE_EPOCH);
        }
        if self.no_cache {
            command = command.arg("--no-cache");
        }
        if let Some(cache) = &self.cache {
            command = cache.flags(command);
        }
        if let Some(iid_file) = &self.iid_file {
            command = command.arg("--iidfile").arg(path_text(iid_file));
        }
        command.arg(path_text(&self.context))
    }
}

/// A registry layer cache: one repository whose tags are buildah's cache
/// keys. A step this storage lacks is looked up there (`--cache-from`) and
/// every step built is pushed there (`--cache-to`); `--layers` is podman's
/// default, named because the cache needs it. The same on podman 4.3 to 5.x,
/// as root or not, local or remote (the client sends the login). A key that
/// is not there, or a registry that refuses the lookup, is a miss; a push
/// the registry refuses fails the build (see [`failed_pushing_cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCache {
    /// `registry/name`, no tag.
    pub repository: String,
    /// How to reach its registry: this run's login (a private auth file),
    /// else podman's own.
    pub destination: super::Destination,
}

impl LayerCache {
    fn flags(&self, command: Command) -> Command {
        let command = command
            .arg("--layers")
            .arg("--cache-from")
            .arg(&self.repository)
            .arg("--cache-to")
            .arg(&self.repository);
        self.destination.connection_flags(command)
    }
}

/// Whether a failed build failed because the registry refused its cache
/// (buildah: `failed pushing cache to "…"`, the same from 4.3 to 5.x).
pub fn failed_pushing_cache(error: &str) -> bool {
    error.contains("failed pushing cache to")
}

/// The same build without the registry cache (after
/// [`failed_pushing_cache`]: its layers are in this storage by then).
pub fn without_layer_cache(build: &Command) -> Command {
    let mut command = build.clone();
    let mut args = Vec::with_capacity(command.args.len());
    let mut given = build.args.iter();
    while let Some(arg) = given.next() {
        if arg == "--cache-from" || arg == "--cache-to" {
            given.next();
        } else {
            args.push(arg.clone());
        }
    }
    command.args = args;
    command
}

/// `labels` as one Containerfile `LABEL` instruction (a line), with the
/// labels it cannot hold: a line break cannot be written in a Containerfile,
/// so labels with one stay `--label` flags.
fn label_instruction(labels: &[(String, String)]) -> (Option<String>, Vec<&(String, String)>) {
    // In double quotes, a backslash escapes `"`, `$` (variable expansion)
    // and itself.
    fn quoted(text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for character in text.chars() {
            if matches!(character, '"' | '$' | '\\') {
                out.push('\\');
            }
            out.push(character);
        }
        out.push('"');
        out
    }
    let (writable, flags): (Vec<_>, Vec<_>) = labels
        .iter()
        .partition(|(key, value)| !key.contains(['\n', '\r']) && !value.contains(['\n', '\r']));
    let instruction = (!writable.is_empty()).then(|| {
        let pairs: Vec<String> = writable
            .iter()
            .map(|(key, value)| format!("{}={}", quoted(key), quoted(value)))
            .collect();
        // No line break at the end: the printed command stays one line.
        format!("LABEL {}", pairs.join(" "))
    });
    (instruction, flags)
}

/// A plain single-platform build tagged `tag` (used for the builder base).
/// `secrets`: `(id, file)`, for `RUN --mount=type=secret,id=ID` steps;
/// `parallel_stages`: how many stages may build at the same time (`--jobs`).
pub fn build_tagged(
    containerfile: &Path,
    context: &Path,
    tag: &str,
    build_args: &[BuildArg],
    labels: &[(String, String)],
    secrets: &[(&str, &Path)],
    parallel_stages: usize,
) -> Command {
    let mut command = podman()
        .arg("build")
        .arg("--tag")
        .arg(tag)
        .arg("--file")
        .arg(path_text(containerfile));
    if parallel_stages > 1 {
        command = command.arg("--jobs").arg(parallel_stages.to_string());
    }
    for (id, file) in secrets {
        command = command
            .arg("--secret")
            .arg(format!("id={id},src={}", path_text(file)));
    }
    for build_arg in build_args {
        command = command
            .arg("--build-arg")
            .arg(format!("{}={}", build_arg.name, build_arg.value));
    }
    for (key, value) in labels {
        command = command.arg("--label").arg(format!("{key}={value}"));
    }
    command.arg(path_text(context))
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Every container, also those podman did not create (buildah's working
/// containers), as JSON.
pub fn containers_all() -> Command {
    podman().args(["ps", "--all", "--external", "--format", "json"])
}

pub fn image_remove(id: &str) -> Command {
    podman().args(["rmi", id])
}

/// Storage use, one JSON object a line.
pub fn system_df() -> Command {
    podman().args(["system", "df", "--format", "{{json .}}"])
}

/// The `podman machine` VMs of a remote client (macOS), as JSON.
pub fn machine_inspect() -> Command {
    podman().args(["machine", "inspect"])
}

pub fn version() -> Command {
    podman().args(["version", "--format", "{{.Client.Version}}"])
}

pub fn info() -> Command {
    podman().args(["info", "--format", "json"])
}

/// The engine's architecture: the shortest question that needs its answer.
pub fn architecture() -> Command {
    podman().args(["info", "--format", "{{.Host.Arch}}"])
}

pub fn image_exists(reference: &str) -> Command {
    podman().args(["image", "exists", reference])
}

pub fn manifest_exists(reference: &str) -> Command {
    podman().args(["manifest", "exists", reference])
}

pub fn manifest_create(name: &str) -> Command {
    podman().args(["manifest", "create", name])
}

pub fn manifest_add(list: &str, image: &str) -> Command {
    podman()
        .args(["manifest", "add", list])
        .arg(format!("containers-storage:{image}"))
}

/// Removes the list, or only this name of it when it has others.
pub fn manifest_remove(name: &str) -> Command {
    manifest_remove_all(&[name])
}

/// [`manifest_remove`] for several names in one call. podman 4.3 goes through
/// every name, and fails at the end if any named nothing.
pub fn manifest_remove_all(names: &[&str]) -> Command {
    podman()
        .args(["manifest", "rm"])
        .args(names.iter().copied())
}

/// Removes one entry (by its digest) from a list; its image stays.
pub fn manifest_remove_entry(list: &str, digest: &str) -> Command {
    podman().args(["manifest", "remove", list, digest])
}

/// Removes a container, including buildah's working containers.
pub fn container_remove(id: &str) -> Command {
    podman().args(["rm", "--force", id])
}

pub fn manifest_inspect(name: &str) -> Command {
    podman().args(["manifest", "inspect", name])
}

/// The digest podman knows `reference` by (a base image's, for provenance).
pub fn image_digest(reference: &str) -> Command {
    podman().args(["image", "inspect", "--format", "{{.Digest}}", reference])
}

/// `reference`'s image ID: the digest of its config, which names every
/// layer's content (`sha256:` and hex, as [`image_id_of`] makes it). The
/// same wherever the image is, where its manifest's digest changes when a
/// push compresses its layers.
pub fn image_id(reference: &str) -> Command {
    podman().args(["image", "inspect", "--format", "{{.Id}}", reference])
}

/// [`image_id`]'s answer as a digest.
pub fn image_id_of(answer: &str) -> String {
    let hex = answer.trim();
    if hex.starts_with("sha256:") {
        hex.to_owned()
    } else {
        format!("sha256:{hex}")
    }
}

pub fn image_inspect(reference: &str) -> Command {
    podman().args(["image", "inspect", "--format", "json", reference])
}

/// One `podman image inspect` for several images; prints them in order.
pub fn image_inspect_all(references: &[&str]) -> Command {
    podman()
        .args(["image", "inspect", "--format", "json"])
        .args(references.iter().copied())
}

/// Takes the name `name` from the image that has it; the image stays.
pub fn untag(name: &str) -> Command {
    podman().args(["untag", name, name])
}

/// Gives `source` every name in `targets`, in one command.
pub fn tag_all(source: &str, targets: &[&str]) -> Command {
    podman().args(["tag", source]).args(targets.iter().copied())
}

/// `podman save` of several images, with their names, into one archive.
pub fn save_all(archive: &Path, images: &[String]) -> Command {
    podman()
        .args(["save", "--quiet", "--multi-image-archive", "--output"])
        .arg(path_text(archive))
        .args(images.iter().cloned())
}

/// `podman load` of an archive [`save_all`] wrote: same image IDs, names and labels.
pub fn load(archive: &Path) -> Command {
    podman()
        .args(["load", "--quiet", "--input"])
        .arg(path_text(archive))
}

/// `podman import` of a root filesystem tarball as an image of `arch`.
pub fn import(tarball: &Path, arch: Arch, changes: &[String], name: &str) -> Command {
    let mut command = podman().args(["import", "--os", "linux", "--arch", arch.oci_name()]);
    for change in changes {
        command = command.arg("--change").arg(change);
    }
    command.arg(path_text(tarball)).arg(name)
}

/// What [`dated_copy`] does, as part of a base image's definition: a change
/// here makes every machine make its dated base images again.
pub const DATED_COPY: &str = "squash-all; --timestamp; no base-image annotations";

/// `from` made into `name`: one layer (`--squash-all`), every file and
/// the image itself dated `timestamp`, with `instructions` (LABEL, ENV,
/// ...) applied: an image whose digest depends on its files only, not on
/// when it was imported (`podman import` dates its history now). Its
/// manifest names no base image (buildah would name `from`, whose digest
/// has the import's date in it).
pub fn dated_copy(
    from: &str,
    instructions: &[String],
    timestamp: i64,
    arch: Arch,
    name: &str,
    context: &Path,
) -> Command {
    let mut containerfile = format!("FROM {from}\n");
    for instruction in instructions {
        containerfile.push_str(instruction);
        containerfile.push('\n');
    }
    let mut command = podman()
        .args(["build", "--quiet", "--squash-all", "--pull=never"])
        .arg(format!("--timestamp={timestamp}"))
        .args(["--annotation", "org.opencontainers.image.base.name="])
        .args(["--annotation", "org.opencontainers.image.base.digest="])
        .arg(format!("--platform=linux/{}", arch.oci_name()))
        .args(["--tag", name, "--file", "-"])
        .arg(path_text(context));
    command.stdin = Some(crate::exec::Stdin::Text(containerfile));
    command
}

/// An image index / manifest list as `podman manifest inspect` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestList {
    #[serde(default)]
    pub manifests: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestEntry {
    pub digest: String,
    pub platform: Option<EntryPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EntryPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl ManifestList {
    pub fn parse(json: &str) -> Result<ManifestList> {
        serde_json::from_str(json).context("cannot parse `podman manifest inspect` output")
    }

    /// Entries whose platform is exactly `platform` (no variant).
    pub fn entries_for(&self, platform: Platform) -> Vec<&ManifestEntry> {
        self.manifests
            .iter()
            .filter(|entry| {
                entry.platform_string().as_deref() == Some(platform.to_string().as_str())
            })
            .collect()
    }
}

impl ManifestEntry {
    pub fn platform_string(&self) -> Option<String> {
        let platform = self.platform.as_ref()?;
        Some(match &platform.variant {
            Some(variant) if !variant.is_empty() => {
                format!("{}/{}/{variant}", platform.os, platform.architecture)
            }
            _ => format!("{}/{}", platform.os, platform.architecture),
        })
    }
}

/// `podman images --all --format json`: every image, with its ID and the
/// digests of its manifests (what a list's entries name).
pub fn images_all() -> Command {
    podman().args(["images", "--all", "--format", "json"])
}

/// [`images_all`], only the images labelled `key=value`. podman builds each
/// row only for the images the filter keeps, and a row is what costs:
/// podman 4.3 walks the whole layer tree for each one (2 s for the 260
/// images of a busy storage here, 26 s for 250 images on one layer).
pub fn images_labelled(key: &str, value: &str) -> Command {
    podman()
        .args(["images", "--all", "--filter"])
        .arg(format!("label={key}={value}"))
        .args(["--format", "json"])
}

/// One image of [`images_all`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRow {
    pub id: String,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub parent_id: String,
    #[serde(default)]
    pub containers: u64,
    /// The digest of the image's manifest.
    #[serde(default)]
    pub digest: String,
    /// Every digest the image has (not printed by podman 4.3).
    #[serde(default)]
    pub digests: Option<Vec<String>>,
    /// Bytes of every layer of the image, shared ones included.
    #[serde(default)]
    pub size: u64,
}

impl ImageRow {
    pub fn parse_all(json: &str) -> Result<Vec<ImageRow>> {
        serde_json::from_str(json).context("cannot parse `podman images --format json`")
    }

    pub fn has_digest(&self, digest: &str) -> bool {
        self.digest == digest || self.digests.iter().flatten().any(|known| known == digest)
    }

    pub fn is_named(&self) -> bool {
        self.names.as_ref().is_some_and(|names| !names.is_empty())
    }
}

/// The parts of `podman image inspect` that say what an image is built for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// The media type of the image's manifest in this storage: OCI for what
    /// podman builds or imports, Docker v2s2 for what `podman load` took
    /// from a `podman save` archive.
    #[serde(default)]
    pub manifest_type: Option<String>,
}

impl ImageConfig {
    /// `podman image inspect` prints an array with one element per reference.
    pub fn parse(json: &str) -> Result<ImageConfig> {
        let mut images: Vec<ImageConfig> =
            serde_json::from_str(json).context("cannot parse `podman image inspect` output")?;
        images
            .pop()
            .context("`podman image inspect` printed no image")
    }

    /// Every image of a multi-reference `podman image inspect`, in order.
    pub fn parse_all(json: &str) -> Result<Vec<ImageConfig>> {
        serde_json::from_str(json).context("cannot parse `podman image inspect` output")
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
}

/// Parses `podman version` output such as `4.3.1` (or `5.0.0-dev`).
pub fn parse_version(text: &str) -> Result<semver::Version> {
    let text = text.trim();
    semver::Version::parse(text)
        .or_else(|_| semver::Version::parse(&format!("{text}.0")))
        .with_context(|| format!("cannot read podman's version from {text:?}"))
}

/// `podman system df`'s own figures. Up to podman 4.3 its images' figure
/// counts a layer once for every image that shares it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodmanUsage {
    pub images_bytes: u64,
    pub containers_bytes: u64,
    pub volumes_bytes: u64,
    pub reclaimable_bytes: u64,
}

/// A line of `podman system df --format '{{json .}}'`. podman 4.3 prints
/// `Size` and `Reclaimable` as numbers; from 4.4 on they are text for people
/// (`"556.2MB"`, `"1.2GB (50%)"`) and the numbers are in `RawSize` and
/// `RawReclaimable`. The raw fields win when present.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfRow {
    #[serde(rename = "Type")]
    kind: String,
    size: serde_json::Value,
    reclaimable: serde_json::Value,
    #[serde(default)]
    raw_size: Option<u64>,
    #[serde(default)]
    raw_reclaimable: Option<u64>,
}

impl DfRow {
    fn bytes(raw: Option<u64>, shown: &serde_json::Value, field: &str) -> Result<u64> {
        raw.or_else(|| shown.as_u64()).with_context(|| {
            format!("`podman system df` gives {field} as {shown} with no Raw{field} beside it")
        })
    }
}

/// Parses `podman system df --format '{{json .}}'` (one JSON object a line).
pub fn parse_podman_usage(text: &str) -> Result<PodmanUsage> {
    let mut usage = PodmanUsage::default();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let row: DfRow = serde_json::from_str(line)
            .with_context(|| format!("cannot parse podman system df line {line:?}"))?;
        let size = DfRow::bytes(row.raw_size, &row.size, "Size")
            .with_context(|| format!("in podman system df line {line:?}"))?;
        let reclaimable = DfRow::bytes(row.raw_reclaimable, &row.reclaimable, "Reclaimable")
            .with_context(|| format!("in podman system df line {line:?}"))?;
        match row.kind.as_str() {
            "Images" => usage.images_bytes = size,
            "Containers" => usage.containers_bytes = size,
            "Local Volumes" => usage.volumes_bytes = size,
            _ => {}
        }
        usage.reclaimable_bytes += reclaimable;
    }
    Ok(usage)
}

/// The first podman machine's name and disk (GiB) in `podman machine
/// inspect`'s answer.
pub fn parse_machine_disk(json: &str) -> Option<(String, u64)> {
    let machines: serde_json::Value = serde_json::from_str(json).ok()?;
    let machine = machines.as_array()?.first()?;
    Some((
        machine["Name"].as_str()?.to_owned(),
        machine["Resources"]["DiskSize"].as_u64()?,
    ))
}

/// A row of `podman ps --all --external --format json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRow {
    pub id: String,
    /// Seconds since the epoch.
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub names: Vec<String>,
}

impl ContainerRow {
    pub fn parse_all(json: &str) -> Result<Vec<ContainerRow>> {
        serde_json::from_str(json).context("cannot parse `podman ps --format json`")
    }

    /// A container podman did not create (state `storage`): buildah's
    /// working container of a build.
    pub fn is_buildahs(&self) -> bool {
        self.state.eq_ignore_ascii_case("storage")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_build_asks_for_parallel_stages_only_when_there_are_several() {
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        let args = |parallel_stages| {
            build_tagged(
                Path::new("containers/rust-builder/Containerfile"),
                Path::new("containers/rust-builder"),
                "localhost/rc-base/rust-builder:bookworm",
                &[],
                &[],
                &[("ca-bundle", bundle)],
                parallel_stages,
            )
            .args
        };
        let parallel = args(2);
        let jobs = parallel.iter().position(|arg| arg == "--jobs").unwrap();
        assert_eq!(parallel[jobs + 1], "2");
        assert_eq!(parallel.last().unwrap(), "containers/rust-builder");
        assert!(!args(1).contains(&"--jobs".to_owned()));
    }

    fn build() -> Build {
        Build {
            containerfile: "containers/rc-web/Containerfile".into(),
            context: ".".into(),
            ignorefile: None,
            platforms: vec![Platform::LINUX_AMD64, Platform::LINUX_ARM64],
            build_platform: Platform::LINUX_AMD64,
            manifest: "localhost/rc-web:build-1".into(),
            target: None,
            build_args: vec!["GIT_REVISION=abc1234".parse().unwrap()],
            volumes: vec![
                "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro".into(),
            ],
            labels: vec![("org.opencontainers.image.version".into(), "v1.2.3".into())],
            timestamp: Some(1_700_000_000),
            no_cache: true,
            cache: None,
            iid_file: None,
        }
    }

    #[test]
    fn an_images_manifest_type_is_read_from_its_inspection() {
        let loaded = ImageConfig::parse(
            r#"[{"Os":"linux","Architecture":"amd64","Labels":null,
                 "ManifestType":"application/vnd.docker.distribution.manifest.v2+json"}]"#,
        )
        .unwrap();
        assert_eq!(
            loaded.manifest_type.as_deref(),
            Some(crate::flags::Format::V2s2.image_media_type())
        );
        let older = ImageConfig::parse(r#"[{"Os":"linux","Architecture":"arm64"}]"#).unwrap();
        assert_eq!(older.manifest_type, None);
    }

    #[test]
    fn a_layer_cache_is_read_and_written_and_can_be_left_out() {
        let cached = Build {
            no_cache: false,
            cache: Some(LayerCache {
                repository: "ghcr.io/acme/app-cache".into(),
                destination: super::super::Destination {
                    registry: "ghcr.io".into(),
                    tls_verify: true,
                    format: crate::flags::Format::Oci,
                    authfile: Some("/run/xtask/auth.json".into()),
                    skopeo_runtime_dir: None,
                },
            }),
            ..build()
        }
        .command();
        let text = cached.to_string();
        assert!(
            text.contains(
                " --layers --cache-from ghcr.io/acme/app-cache --cache-to ghcr.io/acme/app-cache \
                 --tls-verify=true --authfile /run/xtask/auth.json "
            ),
            "{text}"
        );
        let plain = without_layer_cache(&cached).to_string();
        assert!(!plain.contains("--cache-"), "{plain}");
        assert!(
            plain.ends_with("--tls-verify=true --authfile /run/xtask/auth.json ."),
            "{plain}"
        );
        assert!(failed_pushing_cache(
            "command failed (exit status: 125): podman build ...\nError: failed pushing cache to \
             \"127.0.0.1:5000/acme/app-cache:4b40e7f\": connection refused"
        ));
        assert!(!failed_pushing_cache(
            "Error: building at STEP \"RUN false\": exit status 1"
        ));
    }

    #[test]
    fn multi_platform_build_has_every_flag_as_its_own_argument() {
        assert_eq!(
            build().command().to_string(),
            "printf '%s' 'LABEL \"org.opencontainers.image.version\"=\"v1.2.3\"' | \
             env -u SOURCE_DATE_EPOCH podman build --platform linux/amd64,linux/arm64 --manifest localhost/rc-web:build-1 \
             --file containers/rc-web/Containerfile --file - --build-arg BUILDPLATFORM=linux/amd64 \
             --build-arg GIT_REVISION=abc1234 \
             --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
             --annotation org.opencontainers.image.version=v1.2.3 \
             --timestamp 1700000000 --no-cache ."
        );
    }

    #[test]
    fn labels_are_one_instruction_after_the_containerfile() {
        let mut build = build();
        build.labels = vec![
            ("org.opencontainers.image.title".into(), "rc-web".into()),
            ("quoted".into(), r#"say "hi" to $HOME\now"#.into()),
            ("multi-line".into(), "one\ntwo".into()),
        ];
        let command = build.command();
        assert_eq!(
            command.stdin,
            Some(Stdin::Text(
                r#"LABEL "org.opencontainers.image.title"="rc-web" "quoted"="say \"hi\" to \$HOME\\now""#
                    .into()
            ))
        );
        // The values given with `option`, in order.
        let values = |option: &str| -> Vec<String> {
            command
                .args
                .windows(2)
                .filter(|pair| pair[0] == option)
                .map(|pair| pair[1].clone())
                .collect()
        };
        assert_eq!(values("--file"), ["containers/rc-web/Containerfile", "-"]);
        // A line break cannot be written in a Containerfile: that label
        // stays a flag. Every label is an annotation too.
        assert_eq!(values("--label"), ["multi-line=one\ntwo"]);
        assert_eq!(values("--annotation").len(), 3);

        build.labels.clear();
        let command = build.command();
        assert!(command.stdin.is_none());
        assert!(!command.args.contains(&"-".to_owned()));
    }

    #[test]
    fn build_args_need_an_equals_sign_and_a_valid_name() {
        let error = "VERSION".parse::<BuildArg>().unwrap_err().to_string();
        assert!(
            error.contains("has no '='") && error.contains("NAME=VALUE"),
            "{error}"
        );
        assert!("A-B=1".parse::<BuildArg>().is_err());
        let empty: BuildArg = "EMPTY=".parse().unwrap();
        assert_eq!(empty.value, "");
        let with_equals: BuildArg = "FLAGS=a=b".parse().unwrap();
        assert_eq!(with_equals.value, "a=b");
    }

    #[test]
    fn manifest_list_entries_are_matched_by_platform() {
        let json = r#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:aa","platform":{"architecture":"amd64","os":"linux"}},
            {"digest":"sha256:bb","platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"digest":"sha256:cc","platform":{"architecture":"arm64","os":"linux"}}]}"#;
        let list = ManifestList::parse(json).unwrap();
        assert_eq!(list.entries_for(Platform::LINUX_AMD64).len(), 1);
        let arm = list.entries_for(Platform::LINUX_ARM64);
        assert_eq!(arm.len(), 1);
        assert_eq!(arm[0].digest, "sha256:cc");
        assert_eq!(
            list.manifests[1].platform_string().unwrap(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn versions_parse_with_or_without_patch() {
        assert_eq!(
            parse_version("4.3.1\n").unwrap(),
            semver::Version::new(4, 3, 1)
        );
        assert_eq!(parse_version("5.2").unwrap(), semver::Version::new(5, 2, 0));
        assert!(parse_version("podman").is_err());
    }

    #[test]
    fn podman_usage_is_read_from_json_lines() {
        let text = r#"{"Type":"Images","Total":3,"Active":1,"Size":3000000000,"Reclaimable":1000000000}
{"Type":"Containers","Total":1,"Active":0,"Size":5000,"Reclaimable":5000}
{"Type":"Local Volumes","Total":0,"Active":0,"Size":0,"Reclaimable":0}
"#;
        let usage = parse_podman_usage(text).unwrap();
        assert_eq!(usage.images_bytes, 3_000_000_000);
        assert_eq!(usage.containers_bytes, 5000);
        assert_eq!(usage.reclaimable_bytes, 1_000_005_000);
    }

    #[test]
    fn podman_usage_reads_the_raw_figures_of_newer_podman() {
        // podman 5.4.2's lines: sizes for people, numbers in Raw*.
        let text = r#"{"Type":"Images","Total":4,"Active":0,"RawSize":556200000,"RawReclaimable":556200000,"TotalCount":4,"Size":"556.2MB","Reclaimable":"556.2MB (100%)"}
{"Type":"Containers","Total":0,"Active":0,"RawSize":0,"RawReclaimable":0,"TotalCount":0,"Size":"0B","Reclaimable":"0B (0%)"}
{"Type":"Local Volumes","Total":0,"Active":0,"RawSize":0,"RawReclaimable":0,"TotalCount":0,"Size":"0B","Reclaimable":"0B (0%)"}
"#;
        let usage = parse_podman_usage(text).unwrap();
        assert_eq!(usage.images_bytes, 556_200_000);
        assert_eq!(usage.reclaimable_bytes, 556_200_000);
        // Text without the raw number beside it is an error that says so.
        let error =
            parse_podman_usage(r#"{"Type":"Images","Size":"1GB","Reclaimable":0}"#).unwrap_err();
        assert!(format!("{error:#}").contains("no RawSize"), "{error:#}");
    }
}
