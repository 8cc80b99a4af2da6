-- Projects and their tasks: the example resource.

CREATE TYPE task_status AS ENUM ('todo', 'in_progress', 'done');

CREATE TABLE projects (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text        CHECK (char_length(description) <= 2000),
    version     integer     NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Names are unique whatever their letter case.
CREATE UNIQUE INDEX projects_name_key ON projects (lower(name));
-- Keyset pagination walks (sort column, id) in both directions.
CREATE INDEX projects_name_id_idx ON projects (name, id);
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
