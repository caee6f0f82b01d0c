-- The platform's requests to GitHub to deliver a lost webhook delivery again (the worker's
-- redelivery loop): how many times each delivery id was asked for and when last, so requests back
-- off and stop after a limit. Rows older than GitHub's retention (three days) are pruned.
CREATE TABLE webhook_redeliveries (
    repository_id   uuid NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    delivery_guid   text NOT NULL CHECK (delivery_guid <> ''),
    requests        integer NOT NULL CHECK (requests > 0),
    last_request_at timestamptz NOT NULL,
    abandoned_at    timestamptz,
    PRIMARY KEY (repository_id, delivery_guid)
);
CREATE INDEX webhook_redeliveries_last ON webhook_redeliveries (last_request_at);
