-- A signed body resent under a new delivery id is a replay: ingest looks deliveries up by
-- repository and payload digest as well as by id.
CREATE INDEX webhook_deliveries_payload ON webhook_deliveries (repository_external_id, payload_sha256);
