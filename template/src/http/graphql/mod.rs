//! GraphQL at `/graphql`, beside the REST API and over the same operations: a resolver
//! authenticates with the same bearer token, calls the function the REST route calls (with the
//! same validation, scope and version checks), and reports its errors by `extensions.code`.
//! `schema.graphql` is the schema's SDL, written and checked by `cargo xtask openapi`.

mod config;
mod error;
mod graphiql;
mod loader;
mod observe;
mod projects;
{%- if realtime %}
mod subscriptions;
{%- endif %}
mod tasks;

pub use config::GraphqlConfig;
pub use observe::GraphqlMetrics;

use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
{%- if realtime %}
use async_graphql::{BatchRequest, Context, MaybeUndefined, MergedObject, Schema};
{%- else %}
use async_graphql::{BatchRequest, Context, EmptySubscription, MaybeUndefined, MergedObject, Schema};
{%- endif %}
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::Limited;
use tracing::Instrument as _;
use validator::Validate;

use self::error::{Result, from_api};
use self::loader::TaskPages;
use self::observe::{Documents, Observe, ReadOnly};
use super::authn::CurrentUser;
use super::error::ApiError;
use super::extract::IfMatch;
use super::pagination;
use crate::AppState;
use crate::domain::page::{Page, PageSize, Position};

{%- if realtime %}
pub type ApiSchema = Schema<Query, Mutation, subscriptions::Subscription>;
{%- else %}
pub type ApiSchema = Schema<Query, Mutation, EmptySubscription>;
{%- endif %}

#[derive(MergedObject, Default)]
pub struct Query(projects::ProjectQueries, tasks::TaskQueries);

#[derive(MergedObject, Default)]
pub struct Mutation(projects::ProjectMutations, tasks::TaskMutations);

/// The schema, as the application state holds it.
#[derive(Clone)]
pub struct Graphql(ApiSchema);

impl std::fmt::Debug for Graphql {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Graphql")
    }
}

/// The schema with `config`'s limits.
pub fn schema(config: &GraphqlConfig, metrics: GraphqlMetrics) -> Graphql {
{%- if realtime %}
    let builder = Schema::build(Query::default(), Mutation::default(), subscriptions::Subscription)
{%- else %}
    let builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
{%- endif %}
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .extension(Observe {
            max_aliases: config.max_aliases,
            metrics,
            documents: Documents::default(),
        });
    Graphql(if config.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    })
}

/// The schema's SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema(&GraphqlConfig::default(), GraphqlMetrics::default()).0.sdl()
}

/// `POST /graphql`, `GET /graphql` (queries, GraphiQL for a browser{% if realtime %}, or a WebSocket for subscriptions{% endif %}) and
/// GraphiQL's files. The schema itself is built once, with the state (`AppState::graphql`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .route("/graphql/assets/{name}", get(asset))
}

async fn asset(State(state): State<AppState>, name: Path<String>) -> Response {
    if !state.config.graphql.introspection {
        return StatusCode::NOT_FOUND.into_response();
    }
    graphiql::asset(name)
}

/// The caller of a request, or why there is none; resolvers that need one fail with it.
struct Caller(Result<CurrentUser>);

async fn graphql(State(state): State<AppState>, request: Request) -> Response {
{%- if realtime %}
    if request.headers().contains_key(header::UPGRADE) {
        return subscriptions::upgrade(state, request).await;
    }
{%- endif %}
    let config = &state.config.graphql;
    if super::guard::declares_more_than(request.headers(), config.max_body_bytes) {
        return ApiError::PayloadTooLarge.into_response();
    }
    // Also for a body sent without a length, or with a false one.
    let request = request.map(|body| Body::new(Limited::new(body, config.max_body_bytes)));
    let read_only = request.method() == Method::GET;
    if read_only && request.uri().query().is_none_or(str::is_empty) {
        return if config.introspection {
            graphiql::page()
        } else {
            ApiError::BadRequest("send a query: GET /graphql?query=...".to_owned()).into_response()
        };
    }
    let json_only = !accepts_graphql_response(&request);
    let (mut parts, body) = request.into_parts();
    let user = CurrentUser::from_request_parts(&mut parts, &state).await;
    let request = Request::from_parts(parts, body);
    let mut batch = match GraphQLBatchRequest::<ApiError>::from_request(request, &state).await {
        Ok(batch) => batch.into_inner(),
        Err(err) => return err.into_response(),
    };
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > config.max_batch
    {
        let limit = config.max_batch;
        return ApiError::BadRequest(format!("a batch may hold at most {limit} operations")).into_response();
    }
    let caller = user.map_err(from_api);
    for request in batch.iter_mut() {
        if let Ok(user) = &caller {
            request.data.insert(loader_for(&state, user));
        }
        if read_only {
            request.data.insert(ReadOnly);
        }
        request.data.insert(state.clone());
        request.data.insert(Caller(caller.clone()));
    }
    let mut response = GraphQLResponse::from(state.graphql.0.execute_batch(batch).await).into_response();
    if json_only {
        // A client that does not know the GraphQL media type reads it as plain JSON.
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// Whether the client takes `application/graphql-response+json`, which older clients do not.
fn accepts_graphql_response(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/graphql-response+json"))
}

impl From<async_graphql::ParseRequestError> for ApiError {
    fn from(err: async_graphql::ParseRequestError) -> Self {
        match err {
            async_graphql::ParseRequestError::PayloadTooLarge => Self::PayloadTooLarge,
            other => Self::BadRequest(format!("the GraphQL request cannot be read: {other}")),
        }
    }
}

/// The loader of `user`'s task pages for one request (or WebSocket connection). A batch runs
/// in a task of its own, in the span of the request that started it, so its log lines carry
/// that request's id.
fn loader_for(state: &AppState, user: &CurrentUser) -> DataLoader<TaskPages> {
    let pages = TaskPages {
        state: state.clone(),
        scope: user.scope(),
    };
    DataLoader::new(pages, |batch| tokio::spawn(batch.in_current_span()))
}

/// The application state and the authenticated caller, or the caller's error.
fn caller<'a>(ctx: &'a Context<'_>) -> Result<(&'a AppState, &'a CurrentUser)> {
    let Caller(user) = ctx.data_unchecked::<Caller>();
    let user = user.as_ref().map_err(Clone::clone)?;
    Ok((ctx.data_unchecked::<AppState>(), user))
}

/// The cost of a page of `first` items, as the complexity limit counts it.
fn page_size(first: Option<i32>) -> usize {
    PageSize::clamped(first.map(clamp_to_u32)).get() as usize
}

/// A page size asked for as a GraphQL `Int`; a negative one is clamped like zero.
fn clamp_to_u32(first: i32) -> u32 {
    u32::try_from(first).unwrap_or(0)
}

/// A page as a connection; each edge's cursor continues after it, as `next_cursor` would.
fn connection<D, N: async_graphql::OutputType>(
    page: Page<D>,
    order: &str,
    position: impl Fn(&D) -> Position,
    node: impl Fn(D) -> N,
) -> Connection<String, N> {
    let mut connection = Connection::new(false, page.next.is_some());
    connection.edges = page
        .items
        .into_iter()
        .map(|item| Edge::new(pagination::encode(order, position(&item)), node(item)))
        .collect();
    connection
}

/// `body` if it passes the REST API's `validator` rules; `BAD_USER_INPUT` naming each field
/// otherwise.
fn valid<T: Validate>(body: T) -> Result<T> {
    body.validate().map_err(|errors| from_api(errors.into()))?;
    Ok(body)
}

/// The precondition of a write at `version` (any version when `None`), as `If-Match` is.
fn at(version: Option<i32>) -> IfMatch {
    version.map_or(IfMatch::Absent, |version| IfMatch::Versions(vec![version]))
}

/// A field that may be left out, set, or set to `null`, as the REST bodies take it.
fn present<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}
