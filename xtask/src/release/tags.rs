//! Which tags a build gets, from git state. Pure: `compute()` reads a
//! [`SourceState`] and the user's choices and spawns nothing.
//!
//! The rules (docs/multi-platform-builds.md lists them for users):
//! - A semver tag on HEAD (`v1.2.3` or `1.2.3`) is the release: the image gets
//!   that tag verbatim and the short commit. With several, the highest wins.
//! - `latest` moves only for a release that is not a pre-release and is the
//!   highest release in the repository (a hotfix of an old line does not take
//!   `latest` from a newer one), the tree is clean, and every platform built
//!   (unless `--latest-on-partial`). `--no-latest` never moves it.
//! - No version tag on HEAD: the short commit, plus the branch name when on a
//!   branch (a moving development tag, like `main`).
//! - A dirty work tree: only `<short commit>-dirty`; such images are never
//!   pushed unless `--allow-dirty`.
//! - A tag on HEAD that looks like a version but is not semver (`v1.2`) is an
//!   error; other tags (`deployed-prod`) are ignored.
//! - `--tag` replaces all of the above with exactly the given tags.
//! - A shallow clone without any tags cannot tell whether HEAD is a release:
//!   an error that says how to fetch tags, unless `--tag` is given.

use anyhow::{bail, Result};
use semver::Version;

use crate::release::git::SourceState;

pub const LATEST: &str = "latest";
/// OCI distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
const MAX_TAG_LENGTH: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choices {
    /// `--tag` / `TAG`: exactly these tags.
    pub override_tags: Vec<String>,
    pub no_latest: bool,
}

impl Choices {
    pub fn from_flags(image: &crate::flags::ImageFlags) -> Choices {
        Choices {
            override_tags: image.tags.clone(),
            no_latest: image.no_latest,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    /// Tags every platform result gets, in order; the first names the build.
    pub fixed: Vec<String>,
    /// `latest`, when the rules let it move; dropped for a partial result.
    pub latest: bool,
    /// The release version, when HEAD is a release.
    pub version: Option<Version>,
    /// Things the user should know (ignored tags, why latest does not move).
    pub notes: Vec<String>,
}

impl Tags {
    /// Every tag for a result that has every platform (`complete`) or not.
    pub fn for_result(&self, complete: bool, latest_on_partial: bool) -> Vec<String> {
        let mut tags = self.fixed.clone();
        if self.latest && (complete || latest_on_partial) {
            tags.push(LATEST.to_owned());
        }
        tags
    }

    pub fn primary(&self) -> &str {
        &self.fixed[0]
    }
}

/// Checks one tag against the OCI rules, naming the problem and the fix.
pub fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        bail!("an empty tag was given; pass a tag such as v1.2.3");
    }
    if tag.len() > MAX_TAG_LENGTH {
        bail!(
            "tag {tag:?} is {} characters; tags may have at most {MAX_TAG_LENGTH}",
            tag.len()
        );
    }
    let first = tag.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        bail!(
            "tag {tag:?} starts with {:?}; a tag must start with a letter, digit or _",
            first as char
        );
    }
    if let Some(bad) = tag
        .chars()
        .find(|character| !(character.is_ascii_alphanumeric() || "_.-".contains(*character)))
    {
        bail!(
            "tag {tag:?} contains {bad:?}; tags may contain only letters, digits, '_', '.' and '-'"
        );
    }
    Ok(())
}

/// Parses a git tag as a version when it is meant as one: `v1.2.3`, `1.2.3-rc.1`.
/// `Ok(None)` for tags that are not versions at all.
pub fn parse_version_tag(name: &str) -> Result<Option<Version>> {
    let number = name.strip_prefix('v').unwrap_or(name);
    if !number.starts_with(|character: char| character.is_ascii_digit()) {
        return Ok(None);
    }
    match Version::parse(number) {
        Ok(version) if !version.build.is_empty() => bail!(
            "git tag {name:?} has build metadata (+{}), which image tags cannot carry ('+' is not \
             allowed); tag the release without it, or pass --tag",
            version.build
        ),
        Ok(version) => Ok(Some(version)),
        Err(error) => bail!(
            "git tag {name:?} on HEAD looks like a version but is not semver ({error}); \
             release tags are vMAJOR.MINOR.PATCH such as v1.2.0, or pass --tag"
        ),
    }
}

/// Makes a branch name usable as a tag (`feature/x` → `feature-x`).
pub fn branch_tag(branch: &str) -> Option<String> {
    let mut tag: String = branch
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || "_.-".contains(character) {
                character
            } else {
                '-'
            }
        })
        .collect();
    tag = tag.trim_start_matches(['.', '-']).to_owned();
    tag.truncate(MAX_TAG_LENGTH);
    (!tag.is_empty()).then_some(tag)
}

pub fn compute(source: &SourceState, choices: &Choices) -> Result<Tags> {
    let mut notes = Vec::new();
    if !choices.override_tags.is_empty() {
        return overridden(choices);
    }
    if source.shallow && source.all_tags.is_empty() {
        bail!(
            "this is a shallow clone without tags (the default of GitHub's actions/checkout), so \
             release tags cannot be seen; fetch history and tags (`fetch-depth: 0`, or \
             `git fetch --tags --unshallow`), or pass --tag"
        );
    }
    if source.dirty {
        notes.push("the work tree has uncommitted changes: tagged -dirty only, and not pushed unless --allow-dirty".into());
        return Ok(Tags {
            fixed: vec![format!("{}-dirty", source.short_commit)],
            latest: false,
            version: None,
            notes,
        });
    }
    let mut releases_on_head: Vec<(Version, &String)> = Vec::new();
    for name in &source.tags_on_head {
        match parse_version_tag(name)? {
            Some(version) => releases_on_head.push((version, name)),
            None => notes.push(format!(
                "git tag {name:?} on HEAD is not a version; ignored"
            )),
        }
    }
    releases_on_head.sort();
    let Some((version, name)) = releases_on_head.pop() else {
        let mut fixed = vec![source.short_commit.clone()];
        match source.branch.as_deref().and_then(branch_tag) {
            Some(branch) => fixed.push(branch),
            None => notes.push(
                "HEAD is detached and has no version tag: tagged with the commit only".into(),
            ),
        }
        return Ok(Tags {
            fixed,
            latest: false,
            version: None,
            notes,
        });
    };
    let latest = moves_latest(source, choices, (&version, name), &mut notes);
    Ok(Tags {
        fixed: vec![name.clone(), source.short_commit.clone()],
        latest,
        version: Some(version),
        notes,
    })
}

/// `--tag`'s tags, each once, in order; `latest` among them moves it.
fn overridden(choices: &Choices) -> Result<Tags> {
    for tag in &choices.override_tags {
        validate_tag(tag)?;
    }
    let mut fixed: Vec<String> = Vec::new();
    for tag in &choices.override_tags {
        if !fixed.contains(tag) {
            fixed.push(tag.clone());
        }
    }
    let latest = fixed.iter().any(|tag| tag == LATEST) && !choices.no_latest;
    fixed.retain(|tag| tag != LATEST);
    if fixed.is_empty() {
        bail!(
            "--tag latest alone names no build; add a version tag too (e.g. --tag v1.2.3,latest)"
        );
    }
    Ok(Tags {
        fixed,
        latest,
        version: None,
        notes: Vec::new(),
    })
}

/// Whether the release `name` (`version`) on HEAD moves `latest`: not a
/// pre-release, not older than the newest release, and not `--no-latest`.
fn moves_latest(
    source: &SourceState,
    choices: &Choices,
    (version, name): (&Version, &String),
    notes: &mut Vec<String>,
) -> bool {
    let newest_release = source
        .all_tags
        .iter()
        .filter_map(|tag| parse_version_tag(tag).ok().flatten())
        .filter(|version| version.pre.is_empty())
        .max();
    if choices.no_latest {
        false
    } else if !version.pre.is_empty() {
        notes.push(format!("{name} is a pre-release: latest does not move"));
        false
    } else if let Some(newest) = newest_release.filter(|newest| newest > version) {
        notes.push(format!(
            "{name} is older than the newest release {newest}: latest does not move"
        ));
        false
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(tags_on_head: &[&str], all_tags: &[&str]) -> SourceState {
        SourceState {
            commit: "abc1234def5678abc1234def5678abc1234def56".into(),
            short_commit: "abc1234".into(),
            commit_time: 1_700_000_000,
            dirty: false,
            tags_on_head: tags_on_head.iter().map(|tag| tag.to_string()).collect(),
            all_tags: all_tags.iter().map(|tag| tag.to_string()).collect(),
            branch: Some("main".into()),
            shallow: false,
        }
    }

    fn tags(source: &SourceState) -> Tags {
        compute(source, &Choices::default()).unwrap()
    }

    #[test]
    fn a_release_gets_its_tag_the_commit_and_latest() {
        let tags = tags(&source(&["v1.2.3"], &["v1.0.0", "v1.2.3"]));
        assert_eq!(
            tags.for_result(true, false),
            ["v1.2.3", "abc1234", "latest"]
        );
        assert_eq!(tags.version, Some(Version::new(1, 2, 3)));
        assert_eq!(tags.primary(), "v1.2.3");
    }

    #[test]
    fn tags_without_v_prefix_are_releases_too() {
        assert_eq!(
            tags(&source(&["2.0.0"], &["2.0.0"])).for_result(true, false),
            ["2.0.0", "abc1234", "latest"]
        );
    }

    #[test]
    fn a_pre_release_never_moves_latest() {
        let tags = tags(&source(&["v2.0.0-rc.1"], &["v1.2.3", "v2.0.0-rc.1"]));
        assert_eq!(tags.for_result(true, false), ["v2.0.0-rc.1", "abc1234"]);
        assert!(tags.notes.iter().any(|note| note.contains("pre-release")));
    }

    #[test]
    fn a_hotfix_of_an_older_line_does_not_take_latest() {
        let tags = tags(&source(&["v1.2.4"], &["v1.2.4", "v2.0.0"]));
        assert_eq!(tags.for_result(true, false), ["v1.2.4", "abc1234"]);
        // ...but a newer pre-release does not block a release from taking it.
        let tags = compute(
            &source(&["v1.2.4"], &["v1.2.4", "v2.0.0-rc.1"]),
            &Choices::default(),
        )
        .unwrap();
        assert!(tags.latest);
    }

    #[test]
    fn a_partial_result_keeps_latest_only_when_asked() {
        let tags = tags(&source(&["v1.2.3"], &["v1.2.3"]));
        assert_eq!(tags.for_result(false, false), ["v1.2.3", "abc1234"]);
        assert_eq!(
            tags.for_result(false, true),
            ["v1.2.3", "abc1234", "latest"]
        );
    }

    #[test]
    fn no_latest_means_never() {
        let choices = Choices {
            no_latest: true,
            ..Choices::default()
        };
        let tags = compute(&source(&["v1.2.3"], &["v1.2.3"]), &choices).unwrap();
        assert_eq!(tags.for_result(true, true), ["v1.2.3", "abc1234"]);
    }

    #[test]
    fn several_versions_on_head_take_the_highest() {
        let tags = tags(&source(
            &["v1.2.3", "v1.10.0", "v1.10.0-rc.2"],
            &["v1.2.3", "v1.10.0"],
        ));
        assert_eq!(tags.fixed, ["v1.10.0", "abc1234"]);
    }

    #[test]
    fn without_a_version_tag_the_commit_and_branch_name_the_build() {
        let mut state = source(&[], &["v1.0.0"]);
        assert_eq!(tags(&state).for_result(true, true), ["abc1234", "main"]);
        state.branch = Some("feature/Login_v2".into());
        assert_eq!(tags(&state).fixed, ["abc1234", "feature-Login_v2"]);
        state.branch = None;
        let detached = tags(&state);
        assert_eq!(detached.fixed, ["abc1234"]);
        assert!(detached.notes.iter().any(|note| note.contains("detached")));
    }

    #[test]
    fn a_dirty_tree_is_marked_and_never_latest() {
        let mut state = source(&["v1.2.3"], &["v1.2.3"]);
        state.dirty = true;
        let tags = tags(&state);
        assert_eq!(tags.for_result(true, true), ["abc1234-dirty"]);
    }

    #[test]
    fn non_version_tags_are_ignored_and_broken_versions_refused() {
        let tags = tags(&source(&["deployed-prod"], &["deployed-prod"]));
        assert_eq!(tags.fixed, ["abc1234", "main"]);
        assert!(tags.notes[0].contains("deployed-prod"));
        let error = compute(&source(&["v1.2"], &["v1.2"]), &Choices::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not semver") && error.contains("v1.2.0"),
            "{error}"
        );
        let error = compute(&source(&["v1.2.3+build.5"], &[]), &Choices::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("build metadata"), "{error}");
    }

    #[test]
    fn override_tags_replace_the_rules() {
        let choices = Choices {
            override_tags: vec!["candidate".into(), "latest".into()],
            no_latest: false,
        };
        let tags = compute(&source(&["v1.2.3"], &[]), &choices).unwrap();
        assert_eq!(tags.for_result(true, false), ["candidate", "latest"]);
        let choices = Choices {
            override_tags: vec!["Bad Tag".into()],
            no_latest: false,
        };
        let error = compute(&source(&[], &[]), &choices)
            .unwrap_err()
            .to_string();
        assert!(error.contains("contains ' '"), "{error}");
        let choices = Choices {
            override_tags: vec!["latest".into()],
            no_latest: false,
        };
        assert!(compute(&source(&[], &[]), &choices).is_err());
    }

    #[test]
    fn a_shallow_clone_without_tags_is_explained() {
        let mut state = source(&[], &[]);
        state.shallow = true;
        let error = compute(&state, &Choices::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("shallow clone") && error.contains("fetch-depth: 0"),
            "{error}"
        );
        let choices = Choices {
            override_tags: vec!["v9.9.9".into()],
            no_latest: false,
        };
        assert!(compute(&state, &choices).is_ok());
    }

    #[test]
    fn tag_validation_names_the_problem() {
        assert!(validate_tag("v1.2.3").is_ok());
        assert!(validate_tag("_x").is_ok());
        assert!(validate_tag("").unwrap_err().to_string().contains("empty"));
        assert!(validate_tag("-x")
            .unwrap_err()
            .to_string()
            .contains("must start"));
        assert!(validate_tag(&"a".repeat(129))
            .unwrap_err()
            .to_string()
            .contains("at most 128"));
        assert!(validate_tag("a/b").unwrap_err().to_string().contains("'/'"));
    }
}
