DROP TABLE job_schedules;
DROP TABLE jobs;
DROP FUNCTION announce_ready_job();
