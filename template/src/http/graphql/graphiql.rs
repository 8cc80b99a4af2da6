//! GraphiQL at `GET /graphql` for browsers, with its scripts and styles compiled into the
//! binary (`assets/graphiql`): nothing is fetched from a CDN.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// GraphiQL's editors style themselves inline, and its fonts and icons are data URLs; scripts
/// and requests stay on this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
</head>
<body style="margin: 0">
<div id="graphiql" style="height: 100vh"></div>
<script src="/graphql/assets/react.production.min.js"></script>
<script src="/graphql/assets/react-dom.production.min.js"></script>
<script src="/graphql/assets/graphiql.min.js"></script>
<script src="/graphql/assets/start.js"></script>
</body>
</html>
"#;

/// The files under `/graphql/assets/`, with their media types.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../assets/graphiql/graphiql.min.css"),
    ),
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "start.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/graphiql/start.js"),
    ),
];

pub fn page() -> Response {
    with_csp(Html(PAGE).into_response())
}

pub fn asset(Path(name): Path<String>) -> Response {
    let Some((_, media_type, bytes)) = ASSETS.iter().find(|(file, _, _)| *file == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
        // The files change only with the binary; a day keeps a reload cheap.
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
    ];
    with_csp((headers, *bytes).into_response())
}

fn with_csp(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}
