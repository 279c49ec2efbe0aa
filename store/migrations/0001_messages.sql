-- Every message imbridge accepted, one row per message, in ingest order (seq).
-- `line` is the exact Yunxin line served by pull and written by export.
CREATE TABLE IF NOT EXISTS messages
(
    seq           UInt64,
    source        String,
    source_msg_id String,
    scene         String,
    type          UInt16,
    msgid         Int64,
    from_account  String,
    to_account    String,
    tid           Int64,
    accid2        String,
    create_time   Int64,
    created_at    DateTime,
    client_type   UInt8,
    body          String,
    attach        String,
    ext           String,
    line          String,
    received_at   DateTime
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY seq;
