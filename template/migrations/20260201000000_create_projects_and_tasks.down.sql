-- Reverts 20260201000000_create_projects_and_tasks.up.sql.

DROP TABLE tasks;
DROP TABLE projects;
DROP TYPE task_status;
