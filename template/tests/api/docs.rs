//! The OpenAPI document and Swagger UI, served from the binary.

use crate::helpers::{TestApp, json};

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_problem_errors() {
    let app = TestApp::spawn().await;

    let response = app.get("/openapi.json").await;

    assert_eq!(response.status(), 200);
    let spec = json(response).await;
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["title"], env!("CARGO_PKG_NAME"));
    let paths = spec["paths"].as_object().expect("paths");
    for path in ["/health/live", "/health/ready", "/metrics"] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    let shared = |reference: &str| {
        let name = reference
            .strip_prefix("#/components/responses/")
            .expect("a shared response");
        spec["components"]["responses"][name].clone()
    };
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            // A security scheme an operation names is defined, so clients know how to send it.
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("a requirement").keys() {
                    let defined = &spec["components"]["securitySchemes"][scheme];
                    assert!(defined.is_object(), "{method} {path} names undefined scheme {scheme}");
                }
            }
            let responses = operation["responses"].as_object().expect("responses");
            // The rate limits and load shedding stand before every route of the API, and the
            // body extractor before every route that takes one.
            if path.starts_with("/api/") {
                for status in ["429", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
            for (status, response) in responses {
                let response = response["$ref"].as_str().map_or_else(|| response.clone(), shared);
                if (status.starts_with('4') || status.starts_with('5')) && path != "/health/ready" {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is not documented as problem+json"
                    );
                }
            }
        }
    }
    assert_eq!(
        spec,
        serde_json::to_value(service::http::openapi()).expect("serializable")
    );
}

#[tokio::test]
async fn the_docs_can_be_switched_off() {
    let app = TestApp::spawn_with(|config| config.server.docs = false, axum::Router::new()).await;

    for path in ["/openapi.json", "/docs/", "/docs/index.html"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = TestApp::spawn().await;

    let redirect = app.get("/docs").await;
    assert!(redirect.status().is_redirection());

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("http"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page must not load anything from another origin"
    );

    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.expect("body").len() > 100_000);

    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.expect("js");
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}
