-- Identity, projects, repositories and the tokens that reach them (product spec §1, §10).
-- gen_random_uuid() is in core PostgreSQL since 13, so pgcrypto is not needed.
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS vector;

CREATE FUNCTION ck8s_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Rows of append-only tables are never updated, and deleted only through a cascade from their
-- owner (FK actions run as triggers, so pg_trigger_depth() > 1 inside this trigger).
CREATE FUNCTION ck8s_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TABLE users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              citext NOT NULL UNIQUE CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    github_user_id     bigint UNIQUE,
    github_login       citext UNIQUE,
    is_platform_admin  boolean NOT NULL DEFAULT false,
    is_platform_owner  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_owner_is_admin CHECK (NOT is_platform_owner OR is_platform_admin)
);
-- Exactly one owner: a second row with is_platform_owner = true is rejected.
CREATE UNIQUE INDEX users_single_owner ON users (is_platform_owner) WHERE is_platform_owner;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$'),
    name        text NOT NULL CHECK (name <> ''),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    is_platform boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER projects_touch BEFORE UPDATE ON projects FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE project_members (
    project_id             uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role                   text NOT NULL CHECK (role IN ('read', 'read_write', 'admin')),
    learning_mode_override boolean,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);
CREATE TRIGGER project_members_touch BEFORE UPDATE ON project_members FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE repositories (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id            uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    provider              text NOT NULL CHECK (provider IN ('github', 'gitlab')),
    external_id           bigint NOT NULL,
    owner                 text NOT NULL CHECK (owner <> ''),
    name                  text NOT NULL CHECK (name <> ''),
    alias                 text NOT NULL CHECK (alias <> ''),
    role                  text NOT NULL DEFAULT 'service' CHECK (role IN ('orchestrator', 'service', 'docs', 'mixed')),
    default_ref           text NOT NULL DEFAULT 'main',
    -- AES-256-GCM sealed (nonce || ciphertext || tag); never stored in clear.
    token_encrypted       bytea NOT NULL CHECK (octet_length(token_encrypted) > 28),
    services_yaml_path    text NOT NULL DEFAULT 'services.yaml',
    docs_root_path        text,
    bot_token_encrypted   bytea CHECK (bot_token_encrypted IS NULL OR octet_length(bot_token_encrypted) > 28),
    bot_username          text,
    bot_email             text,
    preflight_report_json jsonb,
    preflight_updated_at  timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_id),
    UNIQUE (project_id, alias)
);
-- GitHub owner and repository names are case-insensitive.
CREATE UNIQUE INDEX repositories_project_full_name ON repositories (project_id, provider, lower(owner), lower(name));
CREATE INDEX repositories_full_name ON repositories (provider, lower(owner), lower(name));
CREATE TRIGGER repositories_touch BEFORE UPDATE ON repositories FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

-- Precedence of tokens: repository -> project -> platform.
CREATE TABLE platform_github_tokens (
    id                       smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    platform_token_encrypted bytea,
    bot_token_encrypted      bytea,
    bot_username             text,
    bot_email                text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER platform_github_tokens_touch BEFORE UPDATE ON platform_github_tokens FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE project_github_tokens (
    project_id               uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    platform_token_encrypted bytea,
    bot_token_encrypted      bytea,
    bot_username             text,
    bot_email                text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER project_github_tokens_touch BEFORE UPDATE ON project_github_tokens FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE agents (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_key  text NOT NULL CHECK (agent_key ~ '^[a-z][a-z0-9_-]{0,62}$'),
    role_kind  text NOT NULL CHECK (role_kind IN ('system', 'custom')),
    project_id uuid REFERENCES projects (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name <> ''),
    is_active  boolean NOT NULL DEFAULT true,
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One agent per key per scope: global rows, and project rows that override them.
CREATE UNIQUE INDEX agents_key_global ON agents (agent_key) WHERE project_id IS NULL;
CREATE UNIQUE INDEX agents_key_project ON agents (project_id, agent_key) WHERE project_id IS NOT NULL;
CREATE TRIGGER agents_touch BEFORE UPDATE ON agents FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

INSERT INTO agents (agent_key, role_kind, name) VALUES
    ('dev', 'system', 'AI Developer'),
    ('reviewer', 'system', 'AI Reviewer'),
    ('qa', 'system', 'AI QA'),
    ('pm', 'system', 'AI Product Manager'),
    ('sa', 'system', 'AI Solution Architect'),
    ('em', 'system', 'AI Engineering Manager'),
    ('sre', 'system', 'AI SRE'),
    ('km', 'system', 'AI Knowledge Manager');
