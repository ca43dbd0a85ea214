//! What the build needs to know about the source tree, read through git2
//! (the pipeline never shells out to git for reads).

use std::path::Path;

use anyhow::{Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// Full commit id of HEAD.
    pub commit: String,
    /// Seven-character abbreviation, as `git rev-parse --short` gives by default.
    pub short_commit: String,
    /// HEAD's committer time, seconds since the epoch (for `SOURCE_DATE_EPOCH`).
    pub commit_time: i64,
    /// Tracked files modified, staged or deleted (untracked files do not count).
    pub dirty: bool,
    /// Names of the tags that point at HEAD (annotated or lightweight).
    pub tags_on_head: Vec<String>,
    /// Names of every tag in the repository.
    pub all_tags: Vec<String>,
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// A shallow clone (e.g. GitHub's default checkout) may lack tags and history.
    pub shallow: bool,
}

impl SourceState {
    pub fn read(repository_path: &Path) -> Result<SourceState> {
        let repository = git2::Repository::discover(repository_path).with_context(|| {
            format!(
                "{} is not inside a git repository; images are labelled and tagged from git, \
                 so build from a clone (git clone ...)",
                repository_path.display()
            )
        })?;
        let head = repository
            .head()
            .and_then(|reference| reference.peel_to_commit())
            .context("the git repository has no commit yet; commit something first")?;
        let commit = head.id().to_string();
        let mut status_options = git2::StatusOptions::new();
        status_options
            .include_untracked(false)
            .include_ignored(false);
        let dirty = !repository
            .statuses(Some(&mut status_options))
            .context("cannot read the work tree's status")?
            .is_empty();
        let commit_time = head.committer().when().seconds();
        let all_tags: Vec<String> = repository
            .tag_names(None)
            .context("cannot list the repository's tags")?
            .iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        let tags_on_head = all_tags
            .iter()
            .filter(|name| {
                repository
                    .revparse_single(&format!("refs/tags/{name}"))
                    .and_then(|object| object.peel_to_commit())
                    .is_ok_and(|tagged| tagged.id() == head.id())
            })
            .cloned()
            .collect();
        let branch = if repository.head_detached().unwrap_or(false) {
            None
        } else {
            repository
                .head()
                .ok()
                .and_then(|reference| reference.shorthand().map(str::to_owned))
        };
        Ok(SourceState {
            short_commit: commit[..7].to_owned(),
            commit,
            commit_time,
            dirty,
            tags_on_head,
            all_tags,
            branch,
            shallow: repository.is_shallow(),
        })
    }

    /// The commit time as RFC 3339 UTC (`2024-03-01T12:00:00Z`), the build date
    /// rc-web reports: derived from the commit, so rebuilds are reproducible.
    /// The commit the image is built from, marked when the work tree had
    /// changes (the labels' revision and the `GIT_REVISION` build argument).
    pub fn revision(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.commit)
        } else {
            self.commit.clone()
        }
    }

    pub fn commit_date(&self) -> String {
        rfc3339_utc(self.commit_time)
    }
}

/// Formats seconds since the epoch as RFC 3339 in UTC.
pub fn rfc3339_utc(epoch_seconds: i64) -> String {
    let days = epoch_seconds.div_euclid(86_400);
    let seconds_of_day = epoch_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn reads_this_repository() {
        let state = SourceState::read(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(state.commit.len(), 40);
        assert!(state.commit.starts_with(&state.short_commit));
        assert!(state.commit_time > 1_600_000_000);
    }

    /// A throwaway repository with one commit, built through git2.
    fn scratch_repository(name: &str) -> (std::path::PathBuf, git2::Repository) {
        let path = std::env::temp_dir().join(format!("rc-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let repository = git2::Repository::init(&path).unwrap();
        std::fs::write(path.join("file"), "one").unwrap();
        let mut index = repository.index().unwrap();
        index.add_path(Path::new("file")).unwrap();
        let tree_id = index.write_tree().unwrap();
        index.write().unwrap();
        {
            let tree = repository.find_tree(tree_id).unwrap();
            let signature =
                git2::Signature::new("t", "t@example.invalid", &git2::Time::new(1_700_000_000, 0))
                    .unwrap();
            repository
                .commit(Some("HEAD"), &signature, &signature, "one", &tree, &[])
                .unwrap();
        }
        (path, repository)
    }

    #[test]
    fn sees_tags_on_head_branch_and_dirty_state() {
        let (path, repository) = scratch_repository("tags");
        let head = repository.head().unwrap().peel_to_commit().unwrap();
        repository
            .tag_lightweight("v1.0.0", head.as_object(), false)
            .unwrap();
        let signature = git2::Signature::now("t", "t@example.invalid").unwrap();
        repository
            .tag(
                "v1.0.1-rc.1",
                head.as_object(),
                &signature,
                "annotated",
                false,
            )
            .unwrap();
        let state = SourceState::read(&path).unwrap();
        let mut on_head = state.tags_on_head.clone();
        on_head.sort();
        assert_eq!(on_head, ["v1.0.0", "v1.0.1-rc.1"]);
        assert_eq!(state.commit_time, 1_700_000_000);
        assert!(!state.dirty && !state.shallow);
        assert!(state.branch.is_some());

        std::fs::write(path.join("file"), "two").unwrap();
        assert!(SourceState::read(&path).unwrap().dirty);
        std::fs::write(path.join("untracked"), "x").unwrap();
        std::fs::write(path.join("file"), "one").unwrap();
        assert!(
            !SourceState::read(&path).unwrap().dirty,
            "untracked files do not make the tree dirty"
        );

        repository.set_head_detached(head.id()).unwrap();
        assert_eq!(SourceState::read(&path).unwrap().branch, None);
        std::fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn outside_a_repository_the_error_says_what_to_do() {
        let error = SourceState::read(Path::new("/")).unwrap_err();
        assert!(
            format!("{error:#}").contains("not inside a git repository"),
            "{error:#}"
        );
    }
}
