DROP TRIGGER role_permissions_announce ON role_permissions;
DROP TRIGGER refresh_tokens_announce ON refresh_tokens;
DROP TRIGGER user_roles_announce ON user_roles;
DROP TRIGGER users_announce ON users;
DROP FUNCTION announce_account_change();
