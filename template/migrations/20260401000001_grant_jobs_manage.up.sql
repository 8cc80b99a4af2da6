-- Administrators manage dead jobs (src/http/jobs.rs).
INSERT INTO permissions (name, description) VALUES
    ('jobs:manage', 'List, retry and discard dead background jobs');
INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'jobs:manage');
