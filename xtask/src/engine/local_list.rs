//! A manifest list in local storage: reading it, checking its entries, and
//! finding the image behind each entry.
//!
//! An entry's image is addressed by its image ID, never as `LIST@DIGEST`:
//! podman 4.7 and later resolve a digest reference only when the repository
//! is one of the image's own names, and the images of a built list have no
//! names ("image not known"). `podman images` gives every image's ID with its
//! manifest digest, which is what an entry names, on every version.

use anyhow::{bail, Context, Result};

use crate::{engine::podman, exec::Runner, platform::Platform};

/// `name:build-<pid>` is a temporary list of build-image; it is stale when
/// that process no longer runs.
pub fn stale_temporary_list(name: &str, process_exists: impl Fn(u32) -> bool) -> bool {
    let Some((_, tag)) = name.rsplit_once(':') else {
        return false;
    };
    let Some(pid) = tag
        .strip_prefix("build-")
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    !process_exists(pid)
}

pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub fn read(runner: &Runner, name: &str) -> Result<podman::ManifestList> {
    let json = runner.read(&podman::manifest_inspect(name))?;
    podman::ManifestList::parse(&json)
}

/// The image IDs of a local list's entries, one per digest, in order.
///
/// `label`: one the entries' images are expected to carry (the release's
/// revision). Only the images with it are read first, which on a busy
/// storage is a small share of the cost of reading them all; every image is
/// read when one of the entries is not among them (or that query fails).
pub fn entry_image_ids(
    runner: &Runner,
    list_name: &str,
    digests: &[String],
    label: Option<(&str, &str)>,
) -> Result<Vec<String>> {
    let labelled = label
        .and_then(|(key, value)| runner.read(&podman::images_labelled(key, value)).ok())
        .and_then(|json| podman::ImageRow::parse_all(&json).ok())
        .and_then(|images| image_ids_for(&images, digests).ok());
    if let Some(ids) = labelled {
        return Ok(ids);
    }
    let images = podman::ImageRow::parse_all(&runner.read(&podman::images_all())?)?;
    image_ids_for(&images, digests).with_context(|| format!("in the list {list_name}"))
}

/// Which image each manifest digest is (pure: from `podman images`' rows).
fn image_ids_for(images: &[podman::ImageRow], digests: &[String]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let ids: Vec<String> = digests
        .iter()
        .filter_map(|digest| {
            let found = images.iter().find(|image| image.has_digest(digest));
            if found.is_none() {
                missing.push(digest.as_str());
            }
            found.map(|image| image.id.clone())
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "no image in local storage has the manifest digest {}; rebuild the list with `cargo \
             xtask build-image`",
            missing.join(", ")
        );
    }
    Ok(ids)
}

/// The images of a local list's entries ([`entry_image_ids`], then one
/// `podman image inspect`), one per digest, in order.
pub fn entry_images(
    runner: &Runner,
    list_name: &str,
    digests: &[String],
    label: Option<(&str, &str)>,
) -> Result<Vec<podman::ImageConfig>> {
    let ids = entry_image_ids(runner, list_name, digests, label)?;
    let references: Vec<&str> = ids.iter().map(String::as_str).collect();
    let images =
        podman::ImageConfig::parse_all(&runner.read(&podman::image_inspect_all(&references))?)?;
    if images.len() != digests.len() {
        bail!(
            "`podman image inspect` printed {} images for the {} entries of {list_name}",
            images.len(),
            digests.len()
        );
    }
    Ok(images)
}

/// Platforms of a local list, after checking each entry's image really is
/// built for its platform. `label`: see [`entry_image_ids`].
pub fn verified_platforms(
    runner: &Runner,
    list_name: &str,
    label: Option<(&str, &str)>,
) -> Result<Vec<Platform>> {
    let list = read(runner, list_name)?;
    let mut platforms = Vec::new();
    for entry in &list.manifests {
        let claimed = entry
            .platform_string()
            .unwrap_or_else(|| "no platform".into());
        let platform: Platform = claimed
            .parse()
            .with_context(|| format!("{list_name} has an entry for an unsupported platform"))?;
        if platforms.contains(&platform) {
            bail!("{list_name} has more than one entry for {platform}; rebuild it with `cargo xtask build-image`");
        }
        platforms.push(platform);
    }
    verify_list(runner, list_name, &list, &platforms, label)?;
    Ok(platforms)
}

/// Exactly one entry per expected platform and nothing else; returns each
/// platform's entry digest, in the order expected.
pub fn check_entries(
    list_name: &str,
    list: &podman::ManifestList,
    expected: &[Platform],
) -> Result<Vec<(Platform, String)>> {
    let mut problems = Vec::new();
    let mut single_entries = Vec::new();
    for &platform in expected {
        let entries = list.entries_for(platform);
        match entries.as_slice() {
            [] => problems.push(format!("no entry for {platform}")),
            [entry] => single_entries.push((platform, entry.digest.clone())),
            several => problems.push(format!("{} entries for {platform}", several.len())),
        }
    }
    for entry in &list.manifests {
        let platform = entry
            .platform_string()
            .unwrap_or_else(|| "no platform".into());
        if !expected
            .iter()
            .any(|expected| expected.to_string() == platform)
        {
            problems.push(format!("unexpected entry {} ({platform})", entry.digest));
        }
    }
    if !problems.is_empty() {
        bail!(
            "manifest list {list_name} is wrong: {}",
            problems.join("; ")
        );
    }
    Ok(single_entries)
}

/// [`check_entries`], and each entry's image (one `podman image inspect` for
/// all) must be present and built for the platform its entry claims: for a
/// list this run did not build, which `podman manifest annotate` may have
/// changed since.
fn verify_list(
    runner: &Runner,
    list_name: &str,
    list: &podman::ManifestList,
    expected: &[Platform],
    label: Option<(&str, &str)>,
) -> Result<()> {
    let single_entries = check_entries(list_name, list, expected)?;
    let digests: Vec<String> = single_entries
        .iter()
        .map(|(_, digest)| digest.clone())
        .collect();
    if digests.is_empty() {
        return Ok(());
    }
    let configs = entry_images(runner, list_name, &digests, label)?;
    let problems: Vec<String> = single_entries
        .iter()
        .zip(&configs)
        .filter_map(|((platform, _), config)| {
            let actual = format!("{}/{}", config.os, config.architecture);
            (actual != platform.to_string())
                .then(|| format!("the {platform} entry is an image built for {actual}"))
        })
        .collect();
    if !problems.is_empty() {
        bail!(
            "manifest list {list_name} is wrong: {}",
            problems.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_any_of_an_images_digests() {
        // podman 4.3 prints `Digest` only; later versions add `Digests`.
        let images = podman::ImageRow::parse_all(
            r#"[{"Id":"aaa","Digest":"sha256:11","Size":5},
                {"Id":"bbb","Digest":"sha256:22","Digests":["sha256:22","sha256:33"],"Size":7,
                 "Names":["localhost/x:1"],"ParentId":"aaa","Containers":1}]"#,
        )
        .unwrap();
        let wanted = ["sha256:33".to_owned(), "sha256:11".to_owned()];
        assert_eq!(image_ids_for(&images, &wanted).unwrap(), ["bbb", "aaa"]);
        let error = image_ids_for(&images, &["sha256:44".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("sha256:44"), "{error}");
    }

    #[test]
    fn temporary_lists_are_stale_only_when_their_run_is_gone() {
        let alive = |pid: u32| pid == 42;
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:build-42", alive));
        assert!(stale_temporary_list("ghcr.io/x/rc-web:build-43", alive));
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:v1.2.3", alive));
        assert!(!stale_temporary_list("ghcr.io/x/rc-web:build-cache", alive));
        assert!(!stale_temporary_list("127.0.0.1:5000/rc-web", alive));
    }
}
