//! `cargo xtask new NAME`: generate a service from this checkout of the template.

use anyhow::bail;

use crate::flags::New;
use crate::generate;

pub fn run(new: &New) -> anyhow::Result<()> {
    let sh = generate::shell()?;
    generate::ensure_cargo_generate(&sh)?;
    let dest = std::path::absolute(&new.dest)?;
    let target = dest.join(&new.name);
    if target.exists() {
        bail!("{} already exists; pick another name or --dest", target.display());
    }
    let generated = generate::generate(&sh, &generate::repo_root(), &new.name, &new.defines, &dest)?;
    if !generated.success {
        bail!("{}", generated.failure_reason());
    }
    println!("{}", generated.output.trim());
    Ok(())
}
