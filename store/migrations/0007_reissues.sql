-- Every re-issued copy (origin != seq) with the seq of its original, kept by
-- ClickHouse as messages are inserted: an export finds the originals that a
-- later copy (rendered with newer maps) replaces without scanning messages.
CREATE MATERIALIZED VIEW IF NOT EXISTS reissues
ENGINE = MergeTree()
ORDER BY (origin, seq)
POPULATE
AS SELECT origin, seq FROM messages WHERE origin != seq;
