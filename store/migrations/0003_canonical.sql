-- The canonical message: every source fact needed to render the line again
-- with other maps. `line` is the rendering at load time; `held` rows (a
-- provider group without a team mapping) have no line and are not served.
-- A re-issued copy (new seq, same message) points to its original in
-- `origin`; originals have origin = seq. `render_version` is the map
-- version the line was rendered with.
ALTER TABLE messages ADD COLUMN origin UInt64 DEFAULT seq AFTER seq;
ALTER TABLE messages ADD COLUMN recall_key String AFTER source_msg_id;
ALTER TABLE messages ADD COLUMN group_id String AFTER tid;
ALTER TABLE messages ADD COLUMN tinfo String AFTER accid2;
ALTER TABLE messages ADD COLUMN attach_url String AFTER attach;
ALTER TABLE messages ADD COLUMN held UInt8 AFTER line;
ALTER TABLE messages ADD COLUMN render_version UInt64 AFTER held;
