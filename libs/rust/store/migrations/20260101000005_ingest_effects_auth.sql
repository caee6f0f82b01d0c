-- What the webhook ingest, the GitHub side-effect executor and staff sessions need.

-- Every GitHub delivery, keyed by its delivery id (the idempotency key of ingest).
CREATE TABLE webhook_deliveries (
    delivery_id            text PRIMARY KEY CHECK (delivery_id <> ''),
    provider               text NOT NULL DEFAULT 'github' CHECK (provider IN ('github', 'gitlab')),
    event_type             text NOT NULL,
    action                 text,
    repository_external_id bigint,
    repository_id          uuid REFERENCES repositories (id) ON DELETE SET NULL,
    sender_login           text,
    correlation_id         text NOT NULL,
    outcome                text NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'ignored')),
    reason                 text,
    run_id                 uuid REFERENCES agent_runs (id) ON DELETE SET NULL,
    payload_sha256         text NOT NULL CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    received_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at DESC);
CREATE INDEX webhook_deliveries_repository ON webhook_deliveries (repository_id, received_at DESC);

-- GitHub side effects owed after an ingest or a run commits (comments, labels, reactions),
-- carried out later with retries. The idempotency key makes recording them replay-safe.
CREATE TABLE github_side_effects (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE CHECK (idempotency_key <> ''),
    correlation_id  text NOT NULL,
    run_id          uuid REFERENCES agent_runs (id) ON DELETE CASCADE,
    repository_id   uuid NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('issue_comment', 'status_comment', 'add_labels', 'remove_label', 'reaction')),
    target_number   integer NOT NULL CHECK (target_number > 0),
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    CHECK ((status = 'done') = (done_at IS NOT NULL))
);
CREATE INDEX github_side_effects_due ON github_side_effects (next_attempt_at) WHERE status IN ('pending', 'in_progress');
CREATE INDEX github_side_effects_correlation ON github_side_effects (correlation_id);
CREATE TRIGGER github_side_effects_touch BEFORE UPDATE ON github_side_effects FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

-- Refresh tokens of staff sessions: only a SHA-256 of the token is stored; rotation links each
-- token to its successor, and reuse of a rotated token revokes the whole family.
CREATE TABLE staff_refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    replaced_by uuid REFERENCES staff_refresh_tokens (id) ON DELETE SET NULL,
    revoked_at  timestamptz,
    user_agent  text,
    CHECK (expires_at > issued_at)
);
CREATE INDEX staff_refresh_tokens_user ON staff_refresh_tokens (user_id, issued_at DESC);
CREATE INDEX staff_refresh_tokens_family ON staff_refresh_tokens (family_id);
