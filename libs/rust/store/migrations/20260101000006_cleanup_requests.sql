-- Cleanups owed after an issue or pull request closes (namespaces to delete), carried out by
-- the worker. Recorded by the webhook ingest in the same transaction as the delivery.
CREATE TABLE cleanup_requests (
    id             bigserial PRIMARY KEY,
    repository_id  uuid NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    correlation_id text NOT NULL,
    scope          text NOT NULL CHECK (scope IN ('issue_namespaces', 'pull_request_namespaces')),
    number         integer NOT NULL CHECK (number > 0),
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (correlation_id, scope, number)
);
CREATE INDEX cleanup_requests_pending ON cleanup_requests (created_at) WHERE status = 'pending';
CREATE INDEX cleanup_requests_pr ON cleanup_requests (repository_id, scope, number);
CREATE TRIGGER cleanup_requests_touch BEFORE UPDATE ON cleanup_requests FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();
