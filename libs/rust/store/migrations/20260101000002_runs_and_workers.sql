-- Runs, their leases, workers and slots (product spec §5, §10).

CREATE TABLE agent_runs (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The idempotency key: the delivery id, or a derived id (pr-label-reviewer-*).
    correlation_id        text NOT NULL UNIQUE CHECK (correlation_id <> ''),
    -- Nullable: the worker binds unbound payloads to a synthetic project at claim time.
    project_id            uuid REFERENCES projects (id) ON DELETE CASCADE,
    repository_id         uuid REFERENCES repositories (id) ON DELETE SET NULL,
    agent_id              uuid REFERENCES agents (id) ON DELETE SET NULL,
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    run_payload           jsonb NOT NULL CHECK (jsonb_typeof(run_payload) = 'object'),
    agent_logs_json       jsonb,
    learning_mode         boolean NOT NULL DEFAULT false,
    -- Denormalised from run_payload so lists and joins do not parse JSONB.
    repository_full_name  text,
    issue_number          integer CHECK (issue_number > 0),
    pr_number             integer CHECK (pr_number > 0),
    trigger_source        text,
    trigger_kind          text,
    trigger_label         text,
    agent_key             text,
    runtime_mode          text CHECK (runtime_mode IN ('full-env', 'code-only')),
    -- Ownership by a worker. Every write by a lease holder re-checks owner and expiry.
    lease_owner           text,
    lease_until           timestamptz,
    stale_reclaim_pending boolean NOT NULL DEFAULT false,
    -- Waits are fields, not statuses.
    wait_reason           text CHECK (wait_reason IN ('owner_review', 'approval_pending', 'interaction_response', 'github_rate_limit')),
    wait_target_kind      text,
    wait_target_ref       text,
    wait_deadline_at      timestamptz,
    -- Where the run executes and why it ended.
    namespace             text,
    job_name              text,
    failure_reason        text,
    failure_message       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    CONSTRAINT agent_runs_lease_pair CHECK ((lease_owner IS NULL) = (lease_until IS NULL)),
    CONSTRAINT agent_runs_finished_iff_terminal
        CHECK ((status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL)),
    CONSTRAINT agent_runs_started_unless_pending CHECK (status = 'pending' OR status = 'canceled' OR started_at IS NOT NULL)
);
CREATE INDEX agent_runs_status_started ON agent_runs (status, started_at);
CREATE INDEX agent_runs_status_lease ON agent_runs (status, lease_until, started_at);
CREATE INDEX agent_runs_status_owner_lease ON agent_runs (status, lease_owner, lease_until, started_at);
CREATE INDEX agent_runs_project_learning ON agent_runs (project_id, learning_mode, started_at);
CREATE INDEX agent_runs_pending_created ON agent_runs (created_at) WHERE status = 'pending';
CREATE INDEX agent_runs_repo_issue ON agent_runs (repository_id, issue_number, created_at DESC);
CREATE INDEX agent_runs_repo_pr ON agent_runs (repository_id, pr_number, created_at DESC);
CREATE INDEX agent_runs_project_created ON agent_runs (project_id, created_at DESC);
CREATE TRIGGER agent_runs_touch BEFORE UPDATE ON agent_runs FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE worker_instances (
    worker_id    text PRIMARY KEY CHECK (worker_id <> ''),
    namespace    text,
    pod_name     text,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at >= heartbeat_at)
);
CREATE INDEX worker_instances_status_expires ON worker_instances (status, expires_at);

CREATE TABLE slots (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    slot_no     integer NOT NULL CHECK (slot_no >= 1),
    state       text NOT NULL DEFAULT 'free' CHECK (state IN ('free', 'leased', 'releasing')),
    -- The run holding the slot.
    lease_owner uuid REFERENCES agent_runs (id) ON DELETE SET NULL,
    lease_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, slot_no),
    CHECK (state = 'free' OR lease_until IS NOT NULL)
);
CREATE TRIGGER slots_touch BEFORE UPDATE ON slots FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

CREATE TABLE runtime_deploy_tasks (
    run_id                 uuid PRIMARY KEY REFERENCES agent_runs (id) ON DELETE CASCADE,
    runtime_mode           text NOT NULL CHECK (runtime_mode IN ('full-env', 'code-only')),
    namespace              text,
    target_env             text NOT NULL,
    slot_no                integer,
    repository_full_name   text NOT NULL,
    services_yaml_path     text NOT NULL DEFAULT 'services.yaml',
    build_ref              text NOT NULL,
    deploy_only            boolean NOT NULL DEFAULT false,
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    lease_owner            text,
    lease_until            timestamptz,
    attempts               integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error             text,
    result_namespace       text,
    result_target_env      text,
    logs_json              jsonb NOT NULL DEFAULT '[]'::jsonb,
    cancel_requested_at    timestamptz,
    cancel_requested_by    text,
    cancel_reason          text,
    stop_requested_at      timestamptz,
    stop_requested_by      text,
    stop_reason            text,
    terminal_status_source text CHECK (terminal_status_source IN ('worker', 'operator', 'system')),
    terminal_event_seq     bigint,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    finished_at            timestamptz
);
CREATE INDEX runtime_deploy_tasks_claim ON runtime_deploy_tasks (status, updated_at);
CREATE INDEX runtime_deploy_tasks_target ON runtime_deploy_tasks (target_env, namespace, status);
CREATE TRIGGER runtime_deploy_tasks_touch BEFORE UPDATE ON runtime_deploy_tasks FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();
