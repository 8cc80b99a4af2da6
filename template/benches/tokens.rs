//! Access tokens: every authenticated request verifies one, every login or refresh signs one.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use figment::Figment;
use figment::providers::{Format, Toml};
use service::auth::Tokens;
use service::config::{AuthConfig, Environment};

fn tokens(c: &mut Criterion) {
    let config: AuthConfig = Figment::from(Toml::file_exact(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/development.toml"
    )))
    .extract_inner("auth")
    .expect("[auth] in config/development.toml");
    let tokens = Tokens::new(&config, Environment::Development).expect("the development key");
    let user = uuid::Uuid::new_v4();
    c.bench_function("issue an access token", |b| {
        b.iter(|| tokens.issue_access(black_box(user)));
    });
    let token = tokens.issue_access(user).expect("issue");
    c.bench_function("verify an access token", |b| {
        b.iter(|| tokens.verify_access(black_box(&token)));
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
