//! The integration tests: one binary, so the crate links once; each test runs against its own
//! freshly migrated database and a real server on a free port.

{% if auth == "issuer" %}mod auth;
{% endif %}mod building_blocks;
mod database;
mod docs;
mod health;
mod helpers;
mod http_stack;
{%- if auth == "verifier" %}
mod issuer;
{%- endif %}
mod metrics;
mod migrations;
{%- if example %}
mod ownership;
{%- endif %}
mod process;
{%- if example %}
mod projects;
{%- endif %}
mod rate_limits;
mod server;
{%- if example %}
mod tasks;
{%- endif %}
{%- if auth == "issuer" %}
mod tokens;
{%- endif %}
{%- if auth == "verifier" %}
mod verifier;
{%- endif %}
