-- One row per state of an export run: 'running' when it starts, then 'ok',
-- 'failed' or 'killed' (found by a later run: the process ended mid-run).
-- The row of a run_id with the highest `final` (0 running, 1 ended) is its state. A run covered
-- the messages with seq in (seq_from, seq_to] and create_time in
-- [after_ms, before_ms) that were neither held nor recalled.
CREATE TABLE IF NOT EXISTS export_runs
(
    run_id        String,
    status        String,
    trigger       String,
    mode          String,
    dir           String,
    started_at    DateTime,
    recorded_at   DateTime,
    final         UInt8,
    before_ms     Int64,
    after_ms      Int64,
    seq_from      UInt64,
    seq_to        UInt64,
    files         String,
    lines         UInt64,
    p2p_lines     UInt64,
    team_lines    UInt64,
    bytes         UInt64,
    held          UInt64,
    recalled      UInt64,
    duplicates    UInt64,
    unmapped_urls UInt64,
    error         String,
    host          String,
    pid           UInt32
)
ENGINE = MergeTree()
ORDER BY (run_id, final);
