//! Authentication's hot paths: every authenticated request verifies an access token, every
//! sign-in or refresh signs one, and every sign-in hashes a password with the production
//! Argon2id parameters (the default ones).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;
use service::auth::{AuthConfig, Passwords, Tokens};
use service::config::Environment;

fn development_auth() -> AuthConfig {
    Figment::from(Toml::file_exact(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/development.toml"
    )))
    .extract_inner("auth")
    .expect("[auth] in config/development.toml")
}

fn tokens(c: &mut Criterion) {
    let tokens = Tokens::new(&development_auth(), Environment::Development).expect("the development key");
    let (user, session) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    c.bench_function("issue an access token", |b| {
        b.iter(|| tokens.issue_access(black_box(user), session, &[]));
    });
    let token = tokens.issue_access(user, session, &[]).expect("issue");
    // Verification is async for the verifier's sake; here it completes on its first poll.
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    c.bench_function("verify an access token", |b| {
        b.iter(|| runtime.block_on(tokens.verify_access(black_box(&token))));
    });
}

fn passwords(c: &mut Criterion) {
    let config = development_auth();
    assert_eq!(
        (config.password_memory_kib, config.password_iterations),
        (19_456, 2),
        "benchmark the production parameters"
    );
    let passwords = Passwords::new(&config).expect("hashing settings");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let password = SecretString::from("correct horse battery staple");
    let hash = runtime
        .block_on(passwords.hash(&password))
        .expect("a permit")
        .expect("hash");
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    // Each run takes milliseconds; ten samples are plenty to see a change.
    group.sample_size(10);
    group.bench_function("hash a password", |b| {
        b.iter(|| runtime.block_on(passwords.hash(black_box(&password))));
    });
    group.bench_function("verify a password", |b| {
        b.iter(|| runtime.block_on(passwords.verify(Some(&hash), black_box(&password))));
    });
    group.finish();
}

criterion_group!(benches, tokens, passwords);
criterion_main!(benches);
