//! Domain types and rules. Values here are already parsed and validated: the HTTP layer turns
//! requests into them and the database layer stores and loads them; neither axum nor sqlx
//! appears in this module.

pub mod page;
{%- if example %}
pub mod project;
{%- endif %}
{%- if auth != "none" %}
pub mod scope;
{%- endif %}
{%- if example %}
pub mod task;
{%- endif %}
{%- if auth == "issuer" %}
pub mod user;
{%- endif %}
