-- llm-monitor schema v11: drift (monitor/analyzers/drift.py).
-- profiles: the whylogs profile of one window and segment (serialized sketches), kept so windows can be
-- merged or compared again later; `width` is the window length in seconds (0 for a pinned baseline).
-- drift is recreated with window_end in its key: an hourly and a daily window can start at the same
-- instant and must not replace each other. No earlier version wrote drift rows.
-- Statements are separated by a line holding only ";".
CREATE TABLE IF NOT EXISTS {db}.`profiles` {on_cluster}
(
    `project`       LowCardinality(String),
    `width`         UInt32,
    `window_start`  DateTime64(3, 'UTC'),
    `window_end`    DateTime64(3, 'UTC'),
    `segment`       String,
    `n`             UInt64,
    `profile`       String CODEC(ZSTD(3)),
    `created_at`    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(`created_at`)
PARTITION BY toYYYYMM(`window_start`)
ORDER BY (`project`, `width`, `window_start`, `window_end`, `segment`)
TTL toDateTime(`window_start`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
;
DROP TABLE IF EXISTS {db}.`drift` {on_cluster}
;
CREATE TABLE IF NOT EXISTS {db}.`drift` {on_cluster}
(
    `project`         LowCardinality(String),
    `window_start`    DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `window_end`      DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `baseline_start`  DateTime64(3, 'UTC'),
    `baseline_end`    DateTime64(3, 'UTC'),
    `segment`         String,
    `feature`         LowCardinality(String),
    `method`          LowCardinality(String),
    `score`           Float64,
    `threshold`       Float64,
    `drifted`         Bool,
    `sample_size`     UInt64,
    `baseline_size`   UInt64,
    `created_at`      DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1))
)
ENGINE = ReplacingMergeTree(`created_at`)
PARTITION BY toYYYYMM(`window_start`)
ORDER BY (`project`, `window_start`, `window_end`, `segment`, `feature`, `method`)
TTL toDateTime(`window_start`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000
