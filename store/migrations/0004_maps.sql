-- The team map: a provider's group id → Yunxin tid. The latest committed
-- version of a (source, group_id) wins.
CREATE TABLE IF NOT EXISTS team_map
(
    source   String,
    group_id String,
    tid      Int64,
    version  UInt64,
    added_at DateTime
)
ENGINE = MergeTree()
ORDER BY (source, group_id, version);

-- The URL map: an old media URL → the URL already uploaded to Yunxin.
CREATE TABLE IF NOT EXISTS url_map
(
    old_url  String,
    new_url  String,
    version  UInt64,
    added_at DateTime
)
ENGINE = MergeTree()
ORDER BY (old_url, version);

-- One row per committed map load: entries of team_map/url_map whose version
-- has no row here (a load that died half-way) are ignored.
CREATE TABLE IF NOT EXISTS map_versions
(
    version      UInt64,
    kind         String,
    entries      UInt64,
    committed_at DateTime
)
ENGINE = MergeTree()
ORDER BY version;

-- One row per map version whose re-issue finished: held messages of newly
-- mapped groups and delivered messages of newly mapped URLs were spooled
-- again (new seqs, same msgid).
CREATE TABLE IF NOT EXISTS map_reissues
(
    version  UInt64,
    messages UInt64,
    done_at  DateTime
)
ENGINE = MergeTree()
ORDER BY version;
