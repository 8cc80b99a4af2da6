//! A Socket.IO handshake's request head, copied out of the connection's read buffer.
//! engineioxide keeps each connection's request head for the connection's whole life. hyper
//! parses the URI and header values as slices of the buffer it read them into, and a slice
//! keeps the whole buffer (16 KiB) alive. Each idle connection would hold one.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};

/// Where socketioxide answers (its default path).
pub const PATH: &str = "/socket.io/";

/// `request` with its URI and header values in allocations of their own.
pub fn owned(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();
    // Parsing text copies it; the router's copy of the URI shares the buffer too.
    if let Ok(uri) = parts.uri.to_string().parse::<Uri>() {
        if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
            original.clone_from(&uri);
        }
        parts.uri = uri;
    }
    for value in parts.headers.values_mut() {
        if let Ok(owned) = HeaderValue::from_bytes(value.as_bytes()) {
            *value = owned;
        }
    }
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};

    use super::*;

    /// A request whose URI and header value are slices of one buffer, as hyper parses them.
    fn parsed() -> (Request, Bytes) {
        let text = format!("{PATH}?EIO=4&transport=websocket websocket{}", " ".repeat(16_000));
        let buffer = Bytes::from(text);
        let uri_end = buffer.iter().position(|&byte| byte == b' ').expect("a space");
        let uri = Uri::from_maybe_shared(buffer.slice(..uri_end)).expect("a URI");
        let value = HeaderValue::from_maybe_shared(buffer.slice(uri_end + 1..uri_end + 10)).expect("a value");
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert("upgrade", value);
        request.extensions_mut().insert(OriginalUri(uri));
        (request, buffer)
    }

    #[test]
    fn a_handshake_keeps_nothing_of_the_buffer_it_was_read_into() {
        let (request, buffer) = parsed();
        assert!(!buffer.is_unique());
        let request = owned(request);
        assert!(buffer.is_unique(), "the request still shares the buffer");
        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(
            request.extensions().get::<OriginalUri>().map(|original| &original.0),
            Some(request.uri())
        );
    }
}
