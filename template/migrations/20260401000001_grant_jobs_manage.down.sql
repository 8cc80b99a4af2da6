DELETE FROM role_permissions WHERE permission = 'jobs:manage';
DELETE FROM permissions WHERE name = 'jobs:manage';
