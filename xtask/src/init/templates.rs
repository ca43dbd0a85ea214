//! What `init` writes, from what it read (pure): the metadata table, a
//! Containerfile that cross-compiles on the build platform with the
//! dependencies in a layer of their own, a `.containerignore`, the GitHub
//! release workflow and cargo-make tasks.

use std::fmt::Write as _;

use super::{Found, Member};

/// The base images the written table and Containerfile name (made by
/// `base-images` from the definitions the tool carries).
pub const BUILDER_IMAGE: &str = crate::project::BUILDER_IMAGE;
pub const RUNTIME_IMAGE: &str = "localhost/rc-base/runtime:bookworm";

/// The `[package.metadata.container-image]` table.
pub fn metadata_table(found: &Found, containerfile: &str, context: &str) -> String {
    let registries = found
        .registries
        .iter()
        .map(|registry| format!("{registry:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "\n# The container image `podman-release` builds, pushes and signs (written by\n\
         # `podman-release init`; README: \"Adopting the pipeline\").\n\
         [package.metadata.container-image]\n\
         name = {name:?}\n\
         registries = [{registries}]\n\
         containerfile = {containerfile:?}\n\
         context = {context:?}\n\
         platforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         recipe = \"plain\"\n\
         \n\
         [package.metadata.container-image.base-images]\n\
         BUILDER_IMAGE = {BUILDER_IMAGE:?}\n\
         RUNTIME_IMAGE = {RUNTIME_IMAGE:?}\n",
        name = found.image,
    )
}

/// A stub for each of the workspace's library and binary targets, so that
/// the dependencies compile before the sources are copied in.
fn stubs(members: &[Member]) -> String {
    let mut script = String::new();
    for member in members {
        for (kind, path) in &member.targets {
            let body = if kind == "lib" { "" } else { "fn main() {}" };
            let _ = writeln!(
                script,
                "    mkdir -p {dir}; echo '{body}' > {path}; \\",
                dir = parent(path),
            );
        }
    }
    script
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/')
        .map_or(".", |(directory, _)| directory)
}

/// The Containerfile, for a context at the workspace root.
pub fn containerfile(found: &Found) -> String {
    let manifests: String = found
        .members
        .iter()
        .filter(|member| member.manifest != "Cargo.toml")
        .map(|member| format!("COPY {0} {0}\n", member.manifest))
        .collect();
    let sources: Vec<&str> = found
        .members
        .iter()
        .map(|member| parent(&member.manifest))
        .collect();
    format!(
        r#"# {package}'s release image (written by `podman-release init`). Build
# context: the workspace root.
#
#   podman-release build-image        # both platforms, into manifest lists
#
# The build stage runs on the build platform and cross-compiles for each
# target platform (the builder image carries the cross linkers and the
# foreign standard library): no Rust code is compiled under emulation.
ARG BUILDER_IMAGE={BUILDER_IMAGE}
ARG RUNTIME_IMAGE={RUNTIME_IMAGE}
# Predefined by newer podman; podman 4.3 needs BUILDPLATFORM passed in (the
# tool does), else the build stage would run under emulation.
ARG BUILDPLATFORM
ARG TARGETPLATFORM

FROM --platform=$BUILDPLATFORM ${{BUILDER_IMAGE}} AS build
ARG TARGETARCH
WORKDIR /src
# The dependencies first, compiled against stub sources: this layer is
# built again only when a manifest or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
{manifests}RUN set -eu; \
{stubs}    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "{package}: no Rust target for architecture '$TARGETARCH'" >&2; exit 1 ;; \
    esac; \
    cargo build --release --locked --target "$triple" --package {package}
# Then the sources (newer than the stubs' build, whatever their dates).
COPY . .
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
    esac; \
    find {sources} -path '*/target' -prune -o -name '*.rs' -exec touch {{}} +; \
    cargo build --release --locked --target "$triple" --package {package}; \
    install -D -m 0755 "target/$triple/release/{binary}" /out/{binary}

# --platform=$TARGETPLATFORM: the runtime base of the target architecture.
FROM --platform=$TARGETPLATFORM ${{RUNTIME_IMAGE}}
# Non-root, numeric so that any base image works.
USER 10001:10001
COPY --from=build /out/{binary} /usr/local/bin/{binary}
ENTRYPOINT ["/usr/local/bin/{binary}"]
"#,
        package = found.package,
        binary = found.binary,
        stubs = stubs(&found.members),
        sources = sources.join(" "),
    )
}

pub const CONTAINERIGNORE: &str =
    "# Not part of the image's build context (written by `podman-release init`).\n\
target/\n\
.git/\n\
**/*.rs.bk\n";

/// How the workflow installs the tool: this build's own source.
pub fn install_command() -> String {
    let repository = env!("CARGO_PKG_REPOSITORY");
    format!(
        "cargo install --locked --git {repository} {}",
        env!("CARGO_PKG_NAME")
    )
}

/// The GitHub release workflow: each architecture on a native runner,
/// pushed by digest; the merge with every tag, signed keyless and verified;
/// the release rebuilt from its commit on another runner.
pub fn workflow(found: &Found) -> String {
    include_str!("../../assets/init/release.yml")
        .replace("{{install}}", &install_command())
        .replace("{{package}}", &found.package)
}

/// cargo-make tasks, those of `existing` (a Makefile.toml's text) left out.
/// Each runs once at the workspace root (`workspace = false`): in a
/// workspace, cargo-make otherwise runs a task in every member, where it
/// is not defined.
pub fn makefile_tasks(existing: &str) -> String {
    const TASKS: [(&str, &str, &str); 11] = [
        (
            "build-image",
            "build-image",
            "Build the image for every platform",
        ),
        (
            "build-amd64",
            "build-image --platform linux/amd64",
            "Build the amd64 image",
        ),
        (
            "build-arm64",
            "build-image --platform linux/arm64",
            "Build the arm64 image",
        ),
        (
            "push-image",
            "push-image",
            "Push every tag's list to the registries",
        ),
        ("build-and-push", "build-and-push", "Build, then push"),
        (
            "build-and-push-amd64",
            "build-and-push --platform linux/amd64",
            "Build and push amd64",
        ),
        (
            "build-and-push-arm64",
            "build-and-push --platform linux/arm64",
            "Build and push arm64",
        ),
        (
            "check-disk-space",
            "check-disk-space",
            "Free space against what a build needs",
        ),
        (
            "clean-build-cache",
            "clean-build-cache",
            "Remove build cache and leftovers",
        ),
        (
            "verify",
            "verify",
            "Check a release's signatures and attestations",
        ),
        (
            "reproduce",
            "reproduce",
            "Rebuild a release from its commit and compare",
        ),
    ];
    let mut text = String::new();
    for (task, command, description) in TASKS {
        if existing.contains(&format!("[tasks.{task}]")) {
            continue;
        }
        let args: Vec<String> = command
            .split(' ')
            .map(|word| format!("{word:?}"))
            .chain(["\"${@}\"".to_owned()])
            .collect();
        let _ = write!(
            text,
            "\n[tasks.{task}]\ndescription = {:?}\nworkspace = false\ncommand = \"podman-release\"\nargs = [{}]\n",
            format!("{description} (podman-release)"),
            args.join(", ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Found {
        Found {
            workspace_root: "/w".into(),
            package: "tiny".into(),
            binary: "tiny".into(),
            package_dir: "/w".into(),
            image: "acme/tiny".into(),
            registries: vec!["ghcr.io".into()],
            members: vec![
                Member {
                    manifest: "Cargo.toml".into(),
                    targets: vec![("bin".into(), "src/main.rs".into())],
                },
                Member {
                    manifest: "crates/util/Cargo.toml".into(),
                    targets: vec![("lib".into(), "crates/util/src/lib.rs".into())],
                },
            ],
            cargo_make: false,
            github: true,
        }
    }

    #[test]
    fn the_containerfile_compiles_the_dependencies_on_stubs_then_the_sources() {
        let text = containerfile(&found());
        let dependencies = text
            .find("COPY crates/util/Cargo.toml crates/util/Cargo.toml")
            .unwrap();
        let stub = text.find("echo 'fn main() {}' > src/main.rs").unwrap();
        let library = text.find("echo '' > crates/util/src/lib.rs").unwrap();
        let sources = text.find("COPY . .").unwrap();
        assert!(
            dependencies < stub && stub < library && library < sources,
            "{text}"
        );
        assert!(text.contains("find . crates/util -path"), "{text}");
        assert!(
            text.contains("ENTRYPOINT [\"/usr/local/bin/tiny\"]"),
            "{text}"
        );
        assert!(text.contains("--platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build"));
    }

    #[test]
    fn the_table_names_the_image_its_registries_and_the_project_bases() {
        let table = metadata_table(&found(), "Containerfile", ".");
        assert!(
            table.contains("name = \"acme/tiny\"\nregistries = [\"ghcr.io\"]"),
            "{table}"
        );
        assert!(table.contains(&format!("RUNTIME_IMAGE = \"{RUNTIME_IMAGE}\"")));
    }

    #[test]
    fn cargo_make_gets_the_tasks_it_does_not_have() {
        let tasks = makefile_tasks("[tasks.build-image]\ncommand = \"x\"\n");
        assert!(!tasks.contains("[tasks.build-image]"), "{tasks}");
        assert!(
            tasks.contains(
                "[tasks.build-and-push-amd64]\ndescription = \"Build and push amd64 (podman-release)\"\n\
                 workspace = false\ncommand = \"podman-release\"\nargs = [\"build-and-push\", \"--platform\", \"linux/amd64\", \"${@}\"]"
            ),
            "{tasks}"
        );
    }

    #[test]
    fn the_workflow_installs_this_tool_and_names_the_package() {
        let text = workflow(&found());
        assert!(
            !text.contains("{{install}}") && !text.contains("{{package}}"),
            "{text}"
        );
        assert!(text.contains(&install_command()), "{text}");
    }
}
