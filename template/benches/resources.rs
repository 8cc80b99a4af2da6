//! The example resource's hot paths: validating a request body and serializing a full page.

use criterion::{Criterion, criterion_group, criterion_main};
use service::http::pagination::Page;
use service::http::projects::{CreateProject, Project};
use std::hint::black_box;
use time::OffsetDateTime;
use validator::Validate;

fn validation(c: &mut Criterion) {
    let body: CreateProject =
        serde_json::from_str(r#"{"name": "Website relaunch", "description": "Q3 launch of the new site"}"#)
            .unwrap_or_else(|err| panic!("{err}"));
    c.bench_function("validate a new project", |b| b.iter(|| black_box(&body).validate()));
    c.bench_function("parse and validate a new project", |b| {
        b.iter(|| {
            let body: CreateProject = serde_json::from_str(black_box(r#"{"name": "Website relaunch"}"#))
                .unwrap_or_else(|err| panic!("{err}"));
            body.validate()
        });
    });
}

fn serialization(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let owner_id = uuid::Uuid::now_v7();
    let page = Page {
        items: (0..100)
            .map(|n| Project {
                id: uuid::Uuid::now_v7(),
                owner_id,
                name: format!("Project {n}"),
                description: Some("A project with a description of ordinary length".to_owned()),
                version: 1,
                created_at: now,
                updated_at: now,
            })
            .collect(),
        next_cursor: Some("eyJzb3J0IjoibmFtZSJ9".to_owned()),
    };
    c.bench_function("serialize a page of 100 projects", |b| {
        b.iter(|| serde_json::to_vec(black_box(&page)));
    });
}

criterion_group!(benches, validation, serialization);
criterion_main!(benches);
