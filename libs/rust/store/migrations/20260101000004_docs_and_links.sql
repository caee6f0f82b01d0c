-- Links between artefacts and the document store with 3072-dimension embeddings.

CREATE TABLE links (
    id          bigserial PRIMARY KEY,
    source_type text NOT NULL CHECK (source_type IN ('issue', 'pr', 'run', 'doc', 'adr')),
    source_id   text NOT NULL,
    target_type text NOT NULL CHECK (target_type IN ('issue', 'pr', 'run', 'doc', 'adr')),
    target_id   text NOT NULL,
    link_type   text NOT NULL CHECK (link_type IN ('references', 'implements', 'supersedes')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_type, source_id, target_type, target_id, link_type)
);
CREATE INDEX links_target ON links (target_type, target_id);

CREATE TABLE docs_meta (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    doc_id        text NOT NULL UNIQUE CHECK (doc_id <> ''),
    title         text NOT NULL,
    type          text NOT NULL,
    status        text NOT NULL DEFAULT 'draft',
    body_markdown text NOT NULL DEFAULT '',
    meta          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER docs_meta_touch BEFORE UPDATE ON docs_meta FOR EACH ROW EXECUTE FUNCTION ck8s_touch_updated_at();

-- pgvector's HNSW and IVFFlat index `vector` only up to 2000 dimensions; `halfvec` up to 4000.
-- Embeddings are stored as halfvec(3072) (half the size, ample precision for cosine ranking).
CREATE TABLE doc_chunks (
    id         bigserial PRIMARY KEY,
    doc_id     text NOT NULL REFERENCES docs_meta (doc_id) ON DELETE CASCADE ON UPDATE CASCADE,
    chunk_no   integer NOT NULL CHECK (chunk_no >= 0),
    chunk_text text NOT NULL,
    embedding  halfvec(3072),
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (doc_id, chunk_no)
);
CREATE INDEX doc_chunks_embedding_hnsw ON doc_chunks USING hnsw (embedding halfvec_cosine_ops);
CREATE INDEX doc_chunks_metadata ON doc_chunks USING gin (metadata);
