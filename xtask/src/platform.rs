//! Platform strings (`linux/amd64`) and the few facts the pipeline needs about each.

use std::{fmt, str::FromStr};

use anyhow::{bail, Result};

/// The platforms rc-web's base images and Containerfile provide.
pub const SUPPORTED: [Platform; 2] = [Platform::LINUX_AMD64, Platform::LINUX_ARM64];

/// `os/architecture`, as podman and OCI image indexes spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: Os,
    pub arch: Arch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Os {
    Linux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Platform {
    pub const LINUX_AMD64: Platform = Platform {
        os: Os::Linux,
        arch: Arch::Amd64,
    };
    pub const LINUX_ARM64: Platform = Platform {
        os: Os::Linux,
        arch: Arch::Arm64,
    };

    pub fn linux(arch: Arch) -> Platform {
        Platform {
            os: Os::Linux,
            arch,
        }
    }
}

impl Arch {
    /// The OCI / Debian name (`amd64`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// What `uname -m` prints inside a container of this architecture, and what
    /// rc-web's `/version` reports as `arch`.
    pub fn uname_machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Accepts the OCI name and the kernel's name for the same architecture.
    pub fn from_any_name(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = match self.os {
            Os::Linux => "linux",
        };
        write!(formatter, "{os}/{}", self.arch.oci_name())
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Platform> {
        let supported = supported_list();
        let Some((os, arch)) = text.split_once('/') else {
            bail!("platform {text:?} is not of the form os/architecture; use one of {supported}");
        };
        if os.is_empty() || arch.is_empty() {
            bail!("platform {text:?} is missing its os or architecture; use one of {supported}");
        }
        if arch.contains('/') {
            bail!(
                "platform {text:?} has a variant, and rc-web's images have none; use one of {supported}"
            );
        }
        let os = match os {
            "linux" => Os::Linux,
            other => bail!(
                "platform {text:?}: os {other:?} is not supported (container images here are linux); \
                 use one of {supported}"
            ),
        };
        let arch = match arch {
            "amd64" => Arch::Amd64,
            "arm64" => Arch::Arm64,
            kernel_name @ ("x86_64" | "aarch64") => {
                let oci_name = Arch::from_any_name(kernel_name).map_or("", Arch::oci_name);
                bail!(
                    "platform {text:?}: {kernel_name:?} is the kernel's name; \
                     image platforms spell it linux/{oci_name}"
                )
            }
            other => bail!(
                "platform {text:?}: architecture {other:?} is not provided by the base images; \
                 use one of {supported}"
            ),
        };
        Ok(Platform { os, arch })
    }
}

fn supported_list() -> String {
    SUPPORTED.map(|platform| platform.to_string()).join(", ")
}

/// Parses a comma-separated list such as `linux/amd64,linux/arm64` (from
/// `--platform` or `BUILD_PLATFORMS`). Order is kept; empty items and duplicates
/// are errors, because both usually mean a typo in a script.
pub fn parse_list(text: &str) -> Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    if text.trim().is_empty() {
        bail!(
            "no platform given; use a comma-separated list such as {}",
            supported_list().replace(", ", ",")
        );
    }
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            bail!("platform list {text:?} has an empty item; remove the extra comma");
        }
        let platform: Platform = item.parse()?;
        if platforms.contains(&platform) {
            bail!("platform list {text:?} names {platform} twice; name each platform once");
        }
        platforms.push(platform);
    }
    Ok(platforms)
}

/// `linux/amd64,linux/arm64`: the form podman's `--platform` takes.
pub fn join(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", parse_list(text).unwrap_err())
    }

    #[test]
    fn parses_the_supported_platforms_in_order() {
        let platforms = parse_list("linux/arm64, linux/amd64").unwrap();
        assert_eq!(
            platforms,
            vec![Platform::LINUX_ARM64, Platform::LINUX_AMD64]
        );
        assert_eq!(join(&platforms), "linux/arm64,linux/amd64");
        assert_eq!(
            parse_list("linux/amd64").unwrap(),
            vec![Platform::LINUX_AMD64]
        );
    }

    #[test]
    fn display_round_trips() {
        for platform in SUPPORTED {
            assert_eq!(platform.to_string().parse::<Platform>().unwrap(), platform);
        }
    }

    #[test]
    fn kernel_names_for_architectures_are_not_platform_names() {
        // `linux/x86_64` is a common slip; podman would accept it and build a
        // differently-named image, so we refuse and name the right spelling.
        assert!(error_of("linux/x86_64").contains("linux/amd64"));
        assert!(error_of("linux/aarch64").contains("linux/arm64"));
    }

    #[test]
    fn malformed_platforms_are_refused_with_the_fix() {
        assert!(error_of("amd64").contains("not of the form os/architecture"));
        assert!(error_of("linux-amd64").contains("not of the form os/architecture"));
        assert!(error_of("linux/").contains("missing its os or architecture"));
        assert!(error_of("/arm64").contains("missing its os or architecture"));
        assert!(error_of("linux/amd64,,linux/arm64").contains("empty item"));
        assert!(error_of("linux/amd64,").contains("empty item"));
        assert!(error_of("").contains("no platform given"));
        assert!(error_of("linux/amd64,linux/amd64").contains("twice"));
        assert!(error_of("linux/riscv64").contains("not provided by the base images"));
        assert!(error_of("windows/amd64").contains("os \"windows\" is not supported"));
        assert!(error_of("linux/arm/v7").contains("variant"));
    }

    #[test]
    fn errors_list_what_is_supported() {
        assert!(error_of("linux/s390x").contains("linux/amd64, linux/arm64"));
    }

    #[test]
    fn uname_names_match_what_containers_report() {
        assert_eq!(Arch::Amd64.uname_machine(), "x86_64");
        assert_eq!(Arch::Arm64.uname_machine(), "aarch64");
        assert_eq!(Arch::from_any_name("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::from_any_name("x86_64"), Some(Arch::Amd64));
    }
}
