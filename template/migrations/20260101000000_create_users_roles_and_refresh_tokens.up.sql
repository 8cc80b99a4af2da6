-- Accounts, role-based permissions and refresh tokens.

CREATE TYPE user_status AS ENUM ('active', 'disabled');

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    -- An Argon2id PHC string: algorithm, parameters and salt travel with the hash.
    password_hash text        NOT NULL,
    status        user_status NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One account per address whatever its letter case; also the login lookup.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
-- The admin listing walks (created_at, id).
CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE roles (
    name        text PRIMARY KEY,
    description text NOT NULL
);

CREATE TABLE permissions (
    name        text PRIMARY KEY,
    description text NOT NULL
);

CREATE TABLE role_permissions (
    role       text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission text NOT NULL REFERENCES permissions (name) ON DELETE CASCADE,
    PRIMARY KEY (role, permission)
);

CREATE TABLE user_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    text NOT NULL,
    PRIMARY KEY (user_id, role),
    CONSTRAINT user_roles_role_fkey FOREIGN KEY (role) REFERENCES roles (name)
);
CREATE INDEX user_roles_role_idx ON user_roles (role);

INSERT INTO roles (name, description) VALUES
    ('admin', 'Manages accounts and may act on every resource'),
    ('user', 'A registered account');
INSERT INTO permissions (name, description) VALUES
    ('users:read', 'List accounts and their roles'),
    ('users:write', 'Change roles and disable accounts'),
    ('resources:any', 'Read and change resources owned by anyone');
INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'users:read'),
    ('admin', 'users:write'),
    ('admin', 'resources:any');

-- Refresh tokens are opaque; only their SHA-256 is stored. Each login starts a family; every
-- refresh marks its token used and adds the next one to the family, so presenting a used
-- token again reveals a theft and revokes the whole family.
CREATE TABLE refresh_tokens (
    id                uuid        PRIMARY KEY,
    family_id         uuid        NOT NULL,
    user_id           uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash        bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Idle expiry: unused for this long, the token lapses.
    expires_at        timestamptz NOT NULL,
    -- Absolute expiry of the family: no refresh extends a session past it.
    family_expires_at timestamptz NOT NULL,
    used_at           timestamptz,
    revoked_at        timestamptz
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
