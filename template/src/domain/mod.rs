//! Domain types and rules. Values here are already parsed and validated: the HTTP layer turns
//! requests into them and the database layer stores and loads them; neither axum nor sqlx
//! appears in this module.

pub mod page;
pub mod version;
{%- if auth != "none" %}

pub mod scope;
{%- endif %}
{%- if auth == "issuer" %}

pub mod user;
{%- endif %}
{%- if example %}

pub mod project;
pub mod task;
{%- endif %}
