//! A bare axum hello-world, the yardstick `cargo xtask bench` measures the service against in
//! the same run: `HELLO_PORT=8081 cargo run --release --example hello`.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("HELLO_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8081);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, Router::new().route("/", get(|| async { "ok" }))).await
}
