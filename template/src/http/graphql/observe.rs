//! What every operation goes through besides the schema's own depth and complexity limits:
//! the parsed documents kept for queries sent again, the alias limit, queries only over
//! `GET`, and metrics per operation name.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Response, ServerError, ServerResult, Variables};
use lru::LruCache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Marks a request that came with `GET`, which may only read.
pub struct ReadOnly;

/// The extension, configured once for the schema.
pub struct Observe {
    pub max_aliases: usize,
    pub metrics: GraphqlMetrics,
    pub documents: Documents,
}

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observing {
            max_aliases: self.max_aliases,
            metrics: self.metrics.clone(),
            documents: self.documents.clone(),
        })
    }
}

struct Observing {
    max_aliases: usize,
    metrics: GraphqlMetrics,
    documents: Documents,
}

/// Parsed queries by their text. Clients send the same few queries again and again, and
/// parsing took about a third of the server's time for a simple read. A kept document still
/// goes through every check here and through the schema's validation, as a new one does. Only
/// short queries are kept, and only so many, so that a client sending new queries all the
/// time holds no more memory than that.
#[derive(Clone)]
pub struct Documents(Arc<Mutex<LruCache<Box<str>, ExecutableDocument>>>);

/// How many documents are kept, the least recently used going first.
const KEPT_DOCUMENTS: NonZeroUsize = NonZeroUsize::new(256).expect("not zero");
/// The longest query whose document is kept; what applications send is usually far shorter.
const KEPT_QUERY_BYTES: usize = 2 * 1024;

impl Default for Documents {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(LruCache::new(KEPT_DOCUMENTS))))
    }
}

impl Documents {
    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
            .cloned()
    }

    fn keep(&self, query: &str, document: &ExecutableDocument) {
        if query.len() <= KEPT_QUERY_BYTES {
            let mut documents = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            documents.put(query.into(), document.clone());
        }
    }
}

#[async_trait::async_trait]
impl Extension for Observing {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // A kept document skips the parser, and the `parse_query` of any extension added after
        // this one.
        let document = if let Some(document) = self.documents.get(query) {
            document
        } else {
            let document = next.run(ctx, query, variables).await?;
            self.documents.keep(query, &document);
            document
        };
        let aliases = aliases(&document);
        if aliases > self.max_aliases {
            return Err(refusal(
                format!(
                    "the query has {aliases} aliases; at most {} are allowed",
                    self.max_aliases
                ),
                "ALIAS_LIMIT",
            ));
        }
        let writes = document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty != OperationType::Query);
        if writes && ctx.data_opt::<ReadOnly>().is_some() {
            return Err(refusal(
                "GET carries queries only; send mutations with POST".to_owned(),
                "BAD_REQUEST",
            ));
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let operation = self.metrics.label(operation_name);
        let outcome = if response.errors.is_empty() { "ok" } else { "error" };
        let labels = OperationLabels {
            operation: operation.clone(),
            outcome,
        };
        self.metrics.operations.get_or_create(&labels).inc();
        self.metrics
            .duration
            .get_or_create(&DurationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            operation = operation_name,
            errors = response.errors.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "graphql operation"
        );
        response
    }
}

fn refusal(message: String, code: &'static str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

/// Fields asked for under an alias, in every operation and fragment of `document`.
fn aliases(document: &ExecutableDocument) -> usize {
    let operations = document
        .operations
        .iter()
        .map(|(_, operation)| count(&operation.node.selection_set.node));
    let fragments = document
        .fragments
        .values()
        .map(|fragment| count(&fragment.node.selection_set.node));
    operations.chain(fragments).sum()
}

fn count(selections: &SelectionSet) -> usize {
    selections
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => usize::from(field.node.alias.is_some()) + count(&field.node.selection_set.node),
            Selection::InlineFragment(fragment) => count(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
    /// `ok`, or `error` when the response carries any error.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    operation: String,
}

/// Operations by name. Names come from clients, so only the first [`MAX_NAMES`] distinct ones
/// get a series of their own; later ones count as `other`, unnamed ones as `anonymous`.
#[derive(Debug, Clone)]
pub struct GraphqlMetrics {
    operations: Family<OperationLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    names: Arc<Mutex<HashSet<String>>>,
}

const MAX_NAMES: usize = 200;

/// Seconds, from 1 ms to 10 s.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Default for GraphqlMetrics {
    fn default() -> Self {
        Self {
            operations: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            names: Arc::default(),
        }
    }
}

impl GraphqlMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "graphql_operations",
            "GraphQL operations executed, by operation name and outcome",
            metrics.operations.clone(),
        );
        registry.register(
            "graphql_operation_duration_seconds",
            "Time to execute a GraphQL operation, by operation name",
            metrics.duration.clone(),
        );
        metrics
    }

    fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return "anonymous".to_owned();
        };
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.contains(name) || names.len() < MAX_NAMES && names.insert(name.to_owned()) {
            name.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_counted_in_operations_fragments_and_nested_selections() {
        let document = async_graphql::parser::parse_query(
            "query { a: projects { edges { node { b: id } } } ...F }
             fragment F on Query { c: projects { totalItems: edges { cursor } } }",
        )
        .expect("parses");
        assert_eq!(aliases(&document), 4);
    }

    #[test]
    fn the_documents_of_short_queries_are_kept_and_of_long_ones_not() {
        let documents = Documents::default();
        let short = "{ projects { totalItems } }";
        assert!(documents.get(short).is_none());
        documents.keep(short, &async_graphql::parser::parse_query(short).expect("parses"));
        let kept = documents.get(short).expect("kept");
        assert_eq!(kept.operations.iter().count(), 1);

        let long = format!("{short} #{}", "x".repeat(KEPT_QUERY_BYTES));
        documents.keep(&long, &async_graphql::parser::parse_query(&long).expect("parses"));
        assert!(documents.get(&long).is_none());
    }

    #[test]
    fn operation_names_past_the_bound_share_one_series() {
        let metrics = GraphqlMetrics::default();
        for n in 0..MAX_NAMES {
            assert_eq!(metrics.label(Some(&format!("Op{n}"))), format!("Op{n}"));
        }
        assert_eq!(metrics.label(Some("Op0")), "Op0");
        assert_eq!(metrics.label(Some("OneTooMany")), "other");
        assert_eq!(metrics.label(None), "anonymous");
    }
}
