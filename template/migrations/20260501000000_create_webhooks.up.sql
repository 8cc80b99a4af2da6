-- Webhooks (src/webhooks/): endpoints an account registers for the events of its projects, and
-- a record of every attempt to deliver one. Events are delivered by jobs enqueued in the
-- transaction of the change; a delivery record outlives its job.

CREATE TABLE webhook_endpoints (
    id          uuid        PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    url         text        NOT NULL CHECK (char_length(url) <= 2000),
    -- Event types such as 'project.created'; the API checks the names.
    events      text[]      NOT NULL CHECK (cardinality(events) > 0),
    -- The signing secret (`whsec_` and base64). The service signs with it, so it is kept as
    -- is; the API shows it once, at registration.
    secret      text        NOT NULL,
    description text        CHECK (char_length(description) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(){% if auth == "issuer" %},
    -- Erasing an account erases its endpoints.
    CONSTRAINT webhook_endpoints_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE{% endif %}
);

-- An owner's endpoints, newest first; the same index finds the endpoints an event goes to.
CREATE INDEX webhook_endpoints_owner_id_idx ON webhook_endpoints (owner_id, id DESC);

CREATE TABLE webhook_deliveries (
    id          uuid        PRIMARY KEY,
    endpoint_id uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- `webhook-id`: the same for every attempt at one message.
    message_id  text        NOT NULL,
    event       text        NOT NULL,
    attempt     integer     NOT NULL CHECK (attempt > 0),
    -- NULL when no response came (refused, timed out, circuit open).
    status      integer,
    latency_ms  integer     NOT NULL CHECK (latency_ms >= 0),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- An endpoint's attempts, newest first; leading with endpoint_id, it serves the foreign key.
CREATE INDEX webhook_deliveries_endpoint_id_idx ON webhook_deliveries (endpoint_id, id DESC);
-- The prune schedule deletes old records by age.
CREATE INDEX webhook_deliveries_created_at_idx ON webhook_deliveries (created_at);
