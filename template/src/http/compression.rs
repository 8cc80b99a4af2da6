//! Response compression, paid for only by the requests that ask for it. tower-http's layer
//! wraps every response body in a type that holds each encoder's state inline (about 6 KB),
//! which then moves through every layer outside it, on requests without `Accept-Encoding`
//! (most API clients) too. Those skip it here; the others get tower-http's compression, with
//! its body boxed at once.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::ACCEPT_ENCODING;
use axum::response::Response;
use futures_util::TryFutureExt;
use futures_util::future::{Either, MapOk};
use tower::{Layer, Service};
use tower_http::compression::predicate::DefaultPredicate;
use tower_http::compression::{Compression, CompressionBody, ResponseFuture};

/// Compresses responses for requests that send `Accept-Encoding`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompressionLayer;

impl<S> Layer<S> for CompressionLayer {
    type Service = Compress<S>;

    fn layer(&self, inner: S) -> Compress<S> {
        Compress { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Compress<S> {
    inner: S,
}

type Boxed = fn(Response<CompressionBody<Body>>) -> Response;

impl<S> Service<Request> for Compress<S>
where
    S: Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, MapOk<ResponseFuture<S::Future, DefaultPredicate>, Boxed>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !request.headers().contains_key(ACCEPT_ENCODING) {
            return Either::Left(self.inner.call(request));
        }
        // The service that was polled ready serves this request; a clone waits for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let boxed: Boxed = |response| response.map(Body::new);
        Either::Right(Compression::new(ready).call(request).map_ok(boxed))
    }
}
