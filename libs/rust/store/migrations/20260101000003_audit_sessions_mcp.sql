-- Audit trail, agent sessions, MCP approvals, learning feedback, errors, usage (product spec §6-§10).

CREATE TABLE flow_events (
    id             bigserial PRIMARY KEY,
    correlation_id text NOT NULL CHECK (correlation_id <> ''),
    run_id         uuid,
    actor_type     text NOT NULL CHECK (actor_type IN ('system', 'agent', 'human')),
    actor_id       text NOT NULL,
    event_type     text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$'),
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX flow_events_correlation ON flow_events (correlation_id, created_at);
CREATE INDEX flow_events_type ON flow_events (event_type, created_at);
CREATE INDEX flow_events_run ON flow_events (run_id, id) WHERE run_id IS NOT NULL;
CREATE TRIGGER flow_events_append_only BEFORE UPDATE OR DELETE ON flow_events
    FOR EACH ROW EXECUTE FUNCTION ck8s_append_only();
CREATE TRIGGER flow_events_no_truncate BEFORE TRUNCATE ON flow_events
    FOR EACH STATEMENT EXECUTE FUNCTION ck8s_append_only();

CREATE TABLE agent_sessions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id                 uuid NOT NULL UNIQUE REFERENCES agent_runs (id) ON DELETE CASCADE,
    correlation_id         text NOT NULL,
    project_id             uuid REFERENCES projects (id) ON DELETE CASCADE,
    repository_full_name   text NOT NULL,
    agent_key              text NOT NULL,
    issue_number           integer,
    branch_name            text,
    pr_number              integer,
    pr_url                 text,
    trigger_kind           text,
    template_kind          text,
    template_source        text,
    template_locale        text,
    model                  text,
    reasoning_effort       text,
    status                 text NOT NULL DEFAULT 'running'
                           CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'failed_precondition')),
    session_id             text,
    session_json           jsonb,
    codex_cli_session_path text,
    codex_cli_session_json jsonb,
    snapshot_version       integer NOT NULL DEFAULT 1 CHECK (snapshot_version >= 1),
    snapshot_checksum      text,
    snapshot_updated_at    timestamptz,
    wait_state             text CHECK (wait_state IN ('owner_review', 'mcp', 'backpressure')),
    timeout_guard_disabled boolean NOT NULL DEFAULT false,
    last_heartbeat_at      timestamptz,
    started_at             timestamptz NOT NULL DEFAULT now(),
    finished_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_sessions_resume ON agent_sessions
    (repository_full_name, branch_name, agent_key, snapshot_updated_at DESC, snapshot_version DESC);
CREATE INDEX agent_sessions_wait ON agent_sessions (run_id, wait_state, last_heartbeat_at);
CREATE TRIGGER agent_sessions_touch BEFORE UPDATE ON agent_sessions FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE mcp_action_requests (
    id             bigserial PRIMARY KEY,
    correlation_id text NOT NULL,
    run_id         uuid NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    tool_name      text NOT NULL,
    action         text NOT NULL,
    target_ref     jsonb NOT NULL DEFAULT '{}'::jsonb,
    approval_mode  text NOT NULL CHECK (approval_mode IN ('none', 'owner', 'delegated')),
    approval_state text NOT NULL DEFAULT 'requested'
                   CHECK (approval_state IN ('requested', 'approved', 'denied', 'expired', 'failed', 'applied')),
    requested_by   text NOT NULL,
    applied_by     text,
    decided_by     text,
    decision_reason text,
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mcp_action_requests_state ON mcp_action_requests (approval_state, created_at DESC);
CREATE INDEX mcp_action_requests_correlation ON mcp_action_requests (correlation_id, created_at DESC);
CREATE TRIGGER mcp_action_requests_touch BEFORE UPDATE ON mcp_action_requests FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE project_databases (
    database_name text PRIMARY KEY CHECK (database_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    environment   text NOT NULL CHECK (environment <> ''),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE learning_feedback (
    id            bigserial PRIMARY KEY,
    run_id        uuid NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    repository_id uuid REFERENCES repositories (id) ON DELETE SET NULL,
    pr_number     integer,
    file_path     text,
    line          integer CHECK (line IS NULL OR line >= 1),
    kind          text NOT NULL CHECK (kind IN ('inline', 'post_pr')),
    explanation   text NOT NULL CHECK (explanation <> ''),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX learning_feedback_run ON learning_feedback (run_id, created_at);

CREATE TABLE runtime_errors (
    id             bigserial PRIMARY KEY,
    source         text NOT NULL,
    level          text NOT NULL CHECK (level IN ('error', 'warning', 'critical')),
    message        text NOT NULL,
    details_json   jsonb NOT NULL DEFAULT '{}'::jsonb,
    stack_trace    text,
    correlation_id text,
    run_id         uuid REFERENCES agent_runs (id) ON DELETE SET NULL,
    project_id     uuid REFERENCES projects (id) ON DELETE CASCADE,
    namespace      text,
    job_name       text,
    viewed_at      timestamptz,
    viewed_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runtime_errors_created ON runtime_errors (created_at DESC);
CREATE INDEX runtime_errors_project ON runtime_errors (project_id, created_at DESC);

CREATE TABLE repository_preflight_locks (
    repository_id     uuid PRIMARY KEY REFERENCES repositories (id) ON DELETE CASCADE,
    lock_token        text NOT NULL,
    locked_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    locked_until      timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Token usage of every model call; append-only.
CREATE TABLE token_usage (
    id                bigserial PRIMARY KEY,
    session_id        uuid NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    run_id            uuid NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    model             text NOT NULL,
    prompt_tokens     bigint NOT NULL CHECK (prompt_tokens >= 0),
    cached_prompt_tokens bigint NOT NULL DEFAULT 0 CHECK (cached_prompt_tokens >= 0),
    completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
    reasoning_tokens  bigint NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
    total_tokens      bigint NOT NULL CHECK (total_tokens >= 0),
    cost_usd          numeric(18, 6) CHECK (cost_usd IS NULL OR cost_usd >= 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_usage_session ON token_usage (session_id, created_at);
CREATE INDEX token_usage_run ON token_usage (run_id, created_at);
CREATE TRIGGER token_usage_append_only BEFORE UPDATE OR DELETE ON token_usage
    FOR EACH ROW EXECUTE FUNCTION ck8s_append_only();
