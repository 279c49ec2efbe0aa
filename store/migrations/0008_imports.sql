-- One row per checkpoint of an `imbridge import` of one file: 'running' rows
-- as it goes, then 'done', 'interrupted' or 'failed'. A file is known by the
-- sha256 of its bytes, with the source and format it was read as; its latest
-- row (highest updated_ms) says how far it got: every line up to `lines`
-- (content bytes up to `byte_offset`, decompressed) is durable in imbridge, so an
-- interrupted import resumes after it and a 'done' file is not read again.
-- Counts are the file's, over all the runs that imported it.
CREATE TABLE IF NOT EXISTS imports
(
    sha256      String,
    source      String,
    format      String,
    file        String,
    size        Int64,
    run_id      String,
    state       String,
    lines       UInt64,
    byte_offset UInt64,
    records     UInt64,
    messages    UInt64,
    stored      UInt64,
    duplicates  UInt64,
    recalls     UInt64,
    held        UInt64,
    ignored     UInt64,
    rejected    UInt64,
    error       String,
    started_at  DateTime,
    updated_ms  Int64,
    host        String
)
ENGINE = MergeTree()
ORDER BY (sha256, source, format, updated_ms);
