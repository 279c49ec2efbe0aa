-- One row per pull response written completely: who pulled which seq range.
-- A puller's stored cursor is max(cursor_to) of its rows with advanced = 1.
CREATE TABLE IF NOT EXISTS deliveries
(
    delivered_at DateTime,
    puller       String,
    cursor_from  UInt64,
    cursor_to    UInt64,
    count        UInt64,
    bytes        UInt64,
    remote_addr  String,
    advanced     UInt8,
    duration_ms  UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(delivered_at)
ORDER BY (puller, delivered_at);
