//! `create-admin --email E`: the first administrator, for a service whose accounts all
//! register as plain users. The password is read from standard input, so it never appears in
//! the process list or the shell history.

use anyhow::Context;
use secrecy::SecretString;

use crate::config::Config;
use crate::db::Database;
use crate::domain::user::{self, ADMIN_ROLE};

pub async fn run(config: &Config, email: &str) -> anyhow::Result<()> {
    let email = email.trim();
    user::check_email(email).map_err(|rejected| anyhow::anyhow!("email {rejected}"))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password: SecretString = password.trim_end_matches(['\r', '\n']).into();
    user::check_new_password(secrecy::ExposeSecret::expose_secret(&password))
        .map_err(|rejected| anyhow::anyhow!("password {rejected}"))?;
    let passwords = crate::auth::Passwords::new(&config.auth)?;
    let crate::auth::NewPassword::Hashed(hash) = passwords
        .hash_new(&password)
        .await
        .map_err(|err| anyhow::anyhow!(err))??
    else {
        anyhow::bail!("password {}", user::Rejected::PasswordGuessable);
    };
    let db = Database::connect(&config.database)?;
    let mut conn = db
        .acquire()
        .await
        .context("cannot reach the database; is DATABASE_URL right and PostgreSQL running?")?;
    let created = crate::db::users::insert(&mut conn, email, &hash, ADMIN_ROLE)
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("cannot create the account (are the migrations applied?)")?;
    let id = created.with_context(|| format!("an account with the email {email} already exists"))?;
    println!("created admin {id}");
    drop(conn);
    db.close().await;
    Ok(())
}
