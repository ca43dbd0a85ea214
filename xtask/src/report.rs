//! What a build or push produced, for machines and for people: `--json` on
//! stdout, `GITHUB_OUTPUT` (step outputs) and `GITHUB_STEP_SUMMARY` (a table
//! in the job's summary) when GitHub Actions sets them.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `ghcr.io/daksha-rc/rc-web`: the first registry's.
    pub image: String,
    /// The image in every registry the release went to (or was meant to).
    pub images: Vec<String>,
    /// Registries that do not have the release (their push failed).
    pub failed_registries: Vec<String>,
    /// Tags now pointing at the list in the registry.
    pub tags: Vec<String>,
    /// Tags the rules would give a complete result, held back from this one.
    pub held_back: Vec<String>,
    /// Platform (`linux/amd64`) to the digest of its image in the registry.
    pub platforms: BTreeMap<String, String>,
    /// The digest of the manifest list, when one was pushed.
    pub list_digest: Option<String>,
    pub failed_platforms: Vec<String>,
    /// Things a reader should know (why `latest` did not move, ...).
    pub notes: Vec<String>,
    /// The list, each image, their provenance and SBOM are signed (in every
    /// registry that has the release).
    pub signed: bool,
    /// `key cosign.key`, keyless, or why the release is not signed.
    pub signature: String,
}

impl Report {
    /// The report of a list now in the registry (`remote`, as read back).
    pub fn of_list(
        image: String,
        tags: Vec<String>,
        held_back: Vec<String>,
        remote: Option<&crate::registry::RemoteIndex>,
        failed: &[crate::platform::Platform],
        notes: Vec<String>,
    ) -> Report {
        Report {
            images: vec![image.clone()],
            image,
            failed_registries: Vec::new(),
            tags,
            held_back,
            platforms: remote
                .iter()
                .flat_map(|remote| remote.entries.iter().cloned())
                .collect(),
            list_digest: remote.map(|remote| remote.digest.clone()),
            failed_platforms: failed.iter().map(ToString::to_string).collect(),
            notes,
            signed: false,
            signature: String::new(),
        }
    }

    pub fn is_partial(&self) -> bool {
        !self.failed_platforms.is_empty()
    }

    /// Prints JSON when asked and writes the GitHub files when they are set.
    pub fn emit(&self, title: &str, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        }
        if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
            append(Path::new(&path), &self.github_outputs()?)?;
        }
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            append(Path::new(&path), &self.summary(title))?;
        }
        Ok(())
    }

    /// `name=value` lines for `GITHUB_OUTPUT`; no value has a newline.
    pub fn github_outputs(&self) -> Result<String> {
        let digest = self
            .list_digest
            .clone()
            .or_else(|| {
                (self.platforms.len() == 1)
                    .then(|| self.platforms.values().next().cloned())
                    .flatten()
            })
            .unwrap_or_default();
        Ok(format!(
            "image={}\ntags={}\ndigest={digest}\nfailed-platforms={}\npartial={}\nsigned={}\njson={}\n",
            self.image,
            self.tags.join(","),
            self.failed_platforms.join(","),
            self.is_partial(),
            self.signed,
            serde_json::to_string(self)?
        ))
    }

    /// A Markdown section for the job summary.
    pub fn summary(&self, title: &str) -> String {
        let mut text = format!("### {title}: `{}`\n\n", self.image);
        if self.is_partial() {
            text.push_str(&format!(
                "> **Partial result:** {} failed. The other platforms were released{}.\n\n",
                self.failed_platforms.join(", "),
                if self.held_back.is_empty() {
                    String::new()
                } else {
                    format!(" without `{}`", self.held_back.join("`, `"))
                }
            ));
        }
        text.push_str("| platform | status | digest |\n|---|---|---|\n");
        for (platform, digest) in &self.platforms {
            text.push_str(&format!("| {platform} | pushed | `{digest}` |\n"));
        }
        for platform in &self.failed_platforms {
            text.push_str(&format!("| {platform} | **failed** | |\n"));
        }
        if let Some(digest) = &self.list_digest {
            text.push_str(&format!("\nManifest list: `{}@{digest}`\n", self.image));
        }
        if !self.tags.is_empty() {
            text.push_str(&format!("\nTags: `{}`\n", self.tags.join("`, `")));
        }
        for tag in &self.held_back {
            text.push_str(&format!("\nNot moved: `{tag}` (partial result)\n"));
        }
        if self.signed {
            text.push_str(&format!(
                "\nSigned (the list, each image, their provenance and SBOM): {}\n",
                self.signature
            ));
        } else if !self.signature.is_empty() {
            text.push_str(&format!("\n> **NOT SIGNED:** {}\n", self.signature));
        }
        for note in &self.notes {
            text.push_str(&format!("\nNote: {note}\n"));
        }
        text.push('\n');
        text
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What the registries hold after a push, one answer per registry.
#[derive(Default)]
pub struct Pushed {
    pub results: Vec<(String, Result<Option<crate::registry::RemoteIndex>>)>,
}

impl Pushed {
    /// The list as read back (from the first registry that took it).
    pub fn remote(&self) -> Option<&crate::registry::RemoteIndex> {
        self.results
            .iter()
            .find_map(|(_, result)| result.as_ref().ok().and_then(Option::as_ref))
    }

    pub fn failed_registries(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|(_, result)| result.is_err())
            .map(|(registry, _)| registry.clone())
            .collect()
    }

    /// An error naming every registry that failed, after the summary.
    pub fn into_result(self) -> Result<()> {
        let failed = self.failed_registries();
        let done: Vec<String> = self
            .results
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(registry, _)| registry.clone())
            .collect();
        let mut errors = self.results.into_iter().filter_map(|(registry, result)| {
            result
                .err()
                .map(|error| error.context(format!("the push to {registry} failed")))
        });
        match errors.next() {
            None => Ok(()),
            Some(error) if done.is_empty() => Err(error),
            Some(error) => Err(error.context(format!(
                "the release is in {} but NOT in {}",
                done.join(", "),
                failed.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial() -> Report {
        Report {
            image: "ghcr.io/o/rc-web".into(),
            tags: vec!["v1.2.3".into(), "abc1234".into()],
            held_back: vec!["latest".into()],
            platforms: [("linux/amd64".to_owned(), "sha256:aa".to_owned())].into(),
            list_digest: Some("sha256:ff".into()),
            failed_platforms: vec!["linux/arm64".into()],
            notes: vec![],
            ..Report::default()
        }
    }

    #[test]
    fn outputs_are_single_lines_with_the_list_digest() {
        let outputs = partial().github_outputs().unwrap();
        assert!(outputs.contains("image=ghcr.io/o/rc-web\n"));
        assert!(outputs.contains("tags=v1.2.3,abc1234\n"));
        assert!(outputs.contains("digest=sha256:ff\n"));
        assert!(outputs.contains("failed-platforms=linux/arm64\npartial=true\n"));
        assert!(outputs.lines().all(|line| line.contains('=')), "{outputs}");
        let json = outputs
            .lines()
            .find(|line| line.starts_with("json="))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&json[5..]).unwrap();
        assert_eq!(value["platforms"]["linux/amd64"], "sha256:aa");
    }

    #[test]
    fn a_single_platform_push_outputs_its_image_digest() {
        let report = Report {
            image: "r/i".into(),
            platforms: [("linux/arm64".to_owned(), "sha256:bb".to_owned())].into(),
            ..Report::default()
        };
        assert!(report
            .github_outputs()
            .unwrap()
            .contains("digest=sha256:bb\n"));
    }

    #[test]
    fn the_summary_says_a_partial_result_is_partial() {
        let summary = partial().summary("release");
        assert!(
            summary.contains("**Partial result:** linux/arm64 failed"),
            "{summary}"
        );
        assert!(summary.contains("without `latest`"), "{summary}");
        assert!(
            summary.contains("| linux/arm64 | **failed** | |"),
            "{summary}"
        );
        assert!(
            summary.contains("| linux/amd64 | pushed | `sha256:aa` |"),
            "{summary}"
        );
    }
}
