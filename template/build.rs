//! Rebuilds the crate when a migration is added or removed: `sqlx::migrate!` embeds the files
//! but cargo only watches the ones that already existed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
