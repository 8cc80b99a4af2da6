//! Hot paths every request may take: error rendering, validation error flattening, and page
//! cursors. `cargo xtask bench` runs these, then the HTTP load benchmark.

use axum::response::IntoResponse;
use criterion::{Criterion, criterion_group, criterion_main};
use service::domain::page::{Page, PageSize, Position, SortKind, SortValue};
use service::http::error::ApiError;
use service::http::pagination;
use std::hint::black_box;
use validator::{ValidationError, ValidationErrors};

fn problems(c: &mut Criterion) {
    c.bench_function("render a 404 problem", |b| {
        b.iter(|| black_box(ApiError::NotFound("project not found")).into_response());
    });
    c.bench_function("flatten and render 5 field errors", |b| {
        b.iter(|| {
            let mut errors = ValidationErrors::new();
            for field in ["name", "description", "title", "status", "due_at"] {
                errors.add(field, ValidationError::new("length"));
            }
            ApiError::from(black_box(errors)).into_response()
        });
    });
}

fn cursors(c: &mut Criterion) {
    let items: Vec<u32> = (0..21).collect();
    let position = |n: &u32| Position {
        value: SortValue::Text(format!("name {n}")),
        id: uuid::Uuid::from_u128(u128::from(*n)),
    };
    c.bench_function("encode a page cursor", |b| {
        b.iter(|| {
            let page = Page::from_overfetch(black_box(items.clone()), PageSize::clamped(Some(20)), position);
            pagination::Page::from_domain(page, "name", |n| n)
        });
    });
    let page = Page::from_overfetch(items.clone(), PageSize::clamped(Some(20)), position);
    let cursor = pagination::Page::from_domain(page, "name", |n| n)
        .next_cursor
        .unwrap_or_default();
    c.bench_function("decode a page cursor", |b| {
        b.iter(|| pagination::decode(black_box(&cursor), "name", SortKind::Text));
    });
}

criterion_group!(benches, problems, cursors);
criterion_main!(benches);
