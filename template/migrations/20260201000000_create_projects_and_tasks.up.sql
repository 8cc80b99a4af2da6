-- Projects and their tasks: the example resource. Every project belongs to the account that
-- created it{% if auth == "verifier" %} (an account at the token issuer, so no foreign key){% endif %}; tasks belong to whoever owns their project.

CREATE TYPE task_status AS ENUM ('todo', 'in_progress', 'done');

CREATE TABLE projects (
    id          uuid        PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text        CHECK (char_length(description) <= 2000),
    version     integer     NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
{%- if auth == "issuer" %}
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Erasing an account erases what it owns.
    CONSTRAINT projects_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE
{%- else %}
    updated_at  timestamptz NOT NULL DEFAULT now()
{%- endif %}
);

-- Each owner's names are unique whatever their letter case{% if auth == "issuer" %}; leading with owner_id, the index
-- also serves the foreign key{% endif %}.
CREATE UNIQUE INDEX projects_owner_id_name_key ON projects (owner_id, lower(name));
-- Keyset pages of one owner's projects, and of everyone's for administrators, walk
-- (sort column, id) in both directions.
CREATE INDEX projects_owner_id_name_id_idx ON projects (owner_id, name, id);
CREATE INDEX projects_owner_id_created_at_id_idx ON projects (owner_id, created_at, id);
CREATE INDEX projects_created_at_id_idx ON projects (created_at, id);

CREATE TABLE tasks (
    id          uuid        PRIMARY KEY,
    project_id  uuid        NOT NULL,
    title       text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    status      task_status NOT NULL DEFAULT 'todo',
    due_at      timestamptz,
    version     integer     NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_project_id_fkey FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE
);

-- Keyset pages of one project in either sort order. Leading with project_id, they also serve
-- the foreign key (cascading deletes, joins).
CREATE INDEX tasks_project_id_created_at_id_idx ON tasks (project_id, created_at, id);
CREATE INDEX tasks_project_id_title_id_idx ON tasks (project_id, title, id);
CREATE INDEX tasks_status_created_at_id_idx ON tasks (status, created_at, id);
CREATE INDEX tasks_created_at_id_idx ON tasks (created_at, id);
CREATE INDEX tasks_title_id_idx ON tasks (title, id);
