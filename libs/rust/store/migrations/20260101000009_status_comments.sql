-- The single status comment of each run (product spec §7.1): which comment it is on the forge, the
-- state last rendered into it, and whether a create may have been sent (so a retry after a crash
-- looks for the comment, through the forge's lagging lists, before creating another).

CREATE TABLE run_status_comments (
    correlation_id   text PRIMARY KEY CHECK (correlation_id <> ''),
    repository_id    uuid NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    target_number    integer NOT NULL CHECK (target_number > 0),
    comment_id       bigint,
    state            jsonb NOT NULL DEFAULT '{}'::jsonb,
    create_attempted boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER run_status_comments_touch BEFORE UPDATE ON run_status_comments FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();
