//! The settings (`[graphql]`, `APP_GRAPHQL__*`): what one request may ask for, checked before
//! anything runs.

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlConfig {
    /// How deeply selections may nest. The schema's own types nest 7 deep at most
    /// (`projects { edges { node { tasks { edges { node { id } } } } } }`), but the
    /// introspection queries of GraphiQL and other tools nest 15 deep, and count too.
    pub max_depth: usize,
    /// The most a query may cost: each field counts 1, and a list field multiplies what it
    /// selects by the page size it asks for.
    pub max_complexity: usize,
    /// Fields requested under another name, which would repeat a costly field cheaply.
    pub max_aliases: usize,
    /// Operations in one batched request (a JSON array).
    pub max_batch: usize,
    /// Largest request body; the server's own limit still applies.
    pub max_body_bytes: usize,
    /// Whether clients may read the schema (`__schema`, `__type`) and GraphiQL is served;
    /// production's settings turn it off.
    pub introspection: bool,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_complexity: 5_000,
            max_aliases: 30,
            max_batch: 10,
            max_body_bytes: 64 * 1024,
            introspection: true,
        }
    }
}

impl GraphqlConfig {
    /// Checks what types alone cannot, naming the environment variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zeros = [
            ("APP_GRAPHQL__MAX_DEPTH", self.max_depth),
            ("APP_GRAPHQL__MAX_COMPLEXITY", self.max_complexity),
            ("APP_GRAPHQL__MAX_BATCH", self.max_batch),
            ("APP_GRAPHQL__MAX_BODY_BYTES", self.max_body_bytes),
        ];
        if let Some((name, _)) = zeros.into_iter().find(|(_, value)| *value == 0) {
            bail!("{name} must be greater than 0");
        }
        Ok(())
    }
}
