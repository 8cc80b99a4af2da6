//! `cargo xtask images`: local stand-ins for the registry images the generated service names
//! (Debian, the Rust builder, the distroless runtime, PostgreSQL, Redis), built from Debian packages
//! with podman and tagged with the registry names, so the unchanged Dockerfile, compose file
//! and testcontainers code run on a machine that cannot pull. Where a registry is reachable,
//! none of this is needed.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::flags::Images;
use crate::generate::{self, repo_root, scratch_dir};

pub const DEBIAN: &str = "docker.io/library/debian:bookworm-slim";
pub const RUST: &str = "docker.io/library/rust:1.95-slim-bookworm";
pub const RUNTIME: &str = "gcr.io/distroless/cc-debian12:nonroot";
pub const POSTGRES: &str = "docker.io/library/postgres:15";
/// Tagged 7 like the official image the compose file names; Debian's package is Redis 7.0.
pub const REDIS: &str = "docker.io/library/redis:7";

/// The Rust release the builder stand-in carries; it must be the host's.
const RUST_RELEASE: &str = "1.95";

pub fn run(flags: &Images) -> anyhow::Result<()> {
    ensure(&generate::shell()?, flags.force)
}

/// Builds every stand-in that is missing (all of them with `force`).
pub fn ensure(sh: &Shell, force: bool) -> anyhow::Result<()> {
    if cmd!(sh, "podman info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        bail!("podman does not run here; the stand-in images are built with podman (apt-get install podman runc)");
    }
    let missing = |image: &str| force || cmd!(sh, "podman image exists {image}").quiet().run().is_err();
    if missing(DEBIAN) {
        debian(sh)?;
    }
    if missing(RUST) {
        rust(sh)?;
    }
    for (image, dir) in [(RUNTIME, "distroless-cc"), (POSTGRES, "postgres"), (REDIS, "redis")] {
        if missing(image) {
            let context = repo_root().join("docker").join(dir);
            build(sh, image, &context)?;
        }
    }
    Ok(())
}

/// A minimal Debian bookworm, bootstrapped from the configured mirror and imported.
fn debian(sh: &Shell) -> anyhow::Result<()> {
    println!("building {DEBIAN} with debootstrap (about a minute)");
    ensure!(
        cmd!(sh, "debootstrap --version").quiet().ignore_stdout().run().is_ok(),
        "debootstrap is missing (apt-get install debootstrap)"
    );
    let rootfs = scratch_dir("rootfs")?;
    let mirror = debian_mirror();
    cmd!(sh, "debootstrap --variant=minbase bookworm {rootfs} {mirror}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let import = format!(
        "tar -C {} -c . | podman import --change 'CMD [\"/bin/bash\"]' - {DEBIAN}",
        rootfs.display()
    );
    cmd!(sh, "sh -c {import}").quiet().ignore_stdout().run()?;
    std::fs::remove_dir_all(&rootfs)?;
    Ok(())
}

/// The first Debian mirror apt is configured with, or the default one.
fn debian_mirror() -> String {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .find_map(|line| line.strip_prefix("URIs:"))
        .and_then(|uris| uris.split_whitespace().next())
        .unwrap_or("http://deb.debian.org/debian")
        .to_owned()
}

/// The Rust builder: the host's toolchain packed into the build context.
fn rust(sh: &Shell) -> anyhow::Result<()> {
    let version = cmd!(sh, "rustc --version").read()?;
    ensure!(
        version.starts_with(&format!("rustc {RUST_RELEASE}.")),
        "the builder stand-in packs the host toolchain, which is {version}, not {RUST_RELEASE}"
    );
    let sysroot = cmd!(sh, "rustc --print sysroot").read()?;
    let context = scratch_dir("rust-image")?;
    std::fs::copy(
        repo_root().join("docker/rust/Containerfile"),
        context.join("Containerfile"),
    )?;
    let tarball = context.join("rust.tar.gz");
    println!("packing the host toolchain for {RUST}");
    cmd!(sh, "tar -C {sysroot} --exclude ./share/doc -czf {tarball} .").run()?;
    build(sh, RUST, &context)?;
    std::fs::remove_dir_all(&context)?;
    Ok(())
}

fn build(sh: &Shell, image: &str, context: &Path) -> anyhow::Result<()> {
    println!("building {image}");
    cmd!(sh, "podman build --quiet --tag {image} {context}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("cannot build the stand-in {image}"))?;
    Ok(())
}
