-- Announces, when it commits, every change that can end a session or alter what an account
-- may do, on the channel `account_changes`: the account's id, or '*' for every account. Each
-- replica of the service listens and forgets what it remembered of that account
-- (src/auth/sessions.rs). Triggers rather than the service's own writes, so that a change
-- made by hand in SQL takes effect as quickly. PostgreSQL sends a payload once per
-- transaction however often it is raised.

CREATE FUNCTION announce_account_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('account_changes', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('account_changes', to_jsonb(OLD) ->> TG_ARGV[0]);
    ELSE
        PERFORM pg_notify('account_changes', to_jsonb(NEW) ->> TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_announce AFTER UPDATE OF status OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION announce_account_change('id');
CREATE TRIGGER user_roles_announce AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION announce_account_change('user_id');
CREATE TRIGGER refresh_tokens_announce AFTER UPDATE OF revoked_at OR DELETE ON refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION announce_account_change('user_id');
CREATE TRIGGER role_permissions_announce AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION announce_account_change();
