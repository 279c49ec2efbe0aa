-- One row per recall a provider reported (Easemob recall, Tencent
-- C2C.CallbackAfterMsgWithDraw / Group.CallbackAfterRecallMsg, Yunxin 抄送
-- recall events, RongCloud RC:RcCmd). A message whose (source, recall_key)
-- has a row here is no longer pulled or exported, whether the recall came
-- before or after it; one delivered before the recall stays delivered
-- (Yunxin's line format cannot take it back) and is found by joining
-- messages, recalls and deliveries.
CREATE TABLE IF NOT EXISTS recalls
(
    seq          UInt64,
    source       String,
    recall_key   String,
    recall_id    String,
    operator     String,
    recalled_at  DateTime,
    recall_time  Int64,
    received_at  DateTime
)
ENGINE = MergeTree()
ORDER BY (source, recall_key, seq);
