//! Prometheus metrics.

use crate::helpers::TestApp;

#[tokio::test]
async fn requests_are_counted_by_route_template_and_pool_gauges_are_exported() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.get("/health/ready").await.status(), 200);
    }
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    let odd_method = reqwest::Method::from_bytes(b"FROBNICATE").expect("token");
    assert_eq!(
        app.request(odd_method, "/health/live")
            .send()
            .await
            .expect("request")
            .status(),
        405
    );

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/health/ready",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_count{method="GET",route="/health/ready",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("/no/such/route"), "raw paths must not become labels");
    assert!(
        text.contains(r#"method="OTHER",route="/health/live",status="405""#),
        "{text}"
    );
    assert!(!text.contains("FROBNICATE"), "unknown methods must not become labels");
    for gauge in [
        "db_pool_connections",
        "db_pool_idle_connections",
        "db_pool_waiting_requests",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(&format!("{gauge} "))),
            "{gauge} missing: {text}"
        );
    }
}
