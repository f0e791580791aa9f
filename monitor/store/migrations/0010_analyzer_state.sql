-- llm-monitor schema v10: the analyzers' scheduler (monitor/analyzers/scheduler.py).
-- analyzer_state: one watermark per job. Spans are read in (ingested_at, trace_id, span_id) order past it;
-- the watermark moves only after a batch's scores are stored, so a crash re-scores a batch, never skips one.
-- scores/drift remember recent insert tokens, so a batch re-inserted after a crash is dropped as a whole
-- (and ReplacingMergeTree's key replaces any single repeated row under FINAL).
-- Numbered 0010 to leave room for collector migrations. Statements are separated by a line holding only ";".
CREATE TABLE IF NOT EXISTS {db}.`analyzer_state` {on_cluster}
(
    `job`              LowCardinality(String),
    `watermark`        DateTime64(6, 'UTC'),
    `last_trace_id`    String,
    `last_span_id`     String,
    `version`          LowCardinality(String),
    `processed`        UInt64,
    `updated_at`       DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(`updated_at`)
ORDER BY (`job`)
;
ALTER TABLE {db}.`scores` {on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000
;
ALTER TABLE {db}.`drift` {on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000
