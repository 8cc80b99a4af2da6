//! The integration tests: one binary, so the crate links once; each test runs against its own
//! freshly migrated database and a real server on a free port. Tests of what an option adds
//! sit in its own files, listed below the shared ones.

mod building_blocks;
mod database;
mod docs;
mod health;
mod helpers;
mod http_stack;
mod metrics;
mod migrations;
mod process;
mod rate_limits;
mod server;
mod traces;
{%- if auth != "none" %}

mod callers;
{%- endif %}
{%- if auth == "issuer" %}

mod auth;
mod process_issuer;
mod replicas;
mod sign_in_limits;
mod tokens;
{%- endif %}
{%- if auth == "verifier" %}

mod issuer;
mod verifier;
{%- endif %}
{%- if example %}

mod ownership;
mod projects;
mod tasks;
{%- endif %}
{%- if jobs %}

mod jobs;
{%- endif %}
{%- if jobs and auth != "none" %}
mod jobs_admin;
{%- endif %}
{%- if jobs and example %}
mod webhooks;
{%- endif %}
{%- if redis %}

mod redis;
{%- endif %}
{%- if graphql %}

mod graphql;
{%- endif %}
{%- if graphql and realtime %}
mod graphql_subscriptions;
{%- endif %}
{%- if realtime %}

mod realtime;
mod realtime_limits;
{%- endif %}
