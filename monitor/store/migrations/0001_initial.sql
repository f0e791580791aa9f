-- llm-monitor schema v1: the public tables of DESIGN §2.
-- Placeholders: {db} (quoted database), {retention_days}, {on_cluster} (empty or "ON CLUSTER `name`").
-- Every statement is idempotent. Statements are separated by a line holding only ";".

CREATE TABLE IF NOT EXISTS {db}.`spans` {on_cluster}
(
    `project`          LowCardinality(String),
    `service`          LowCardinality(String),
    `environment`      LowCardinality(String),
    `trace_id`         String CODEC(ZSTD(1)),
    `span_id`          String CODEC(ZSTD(1)),
    `parent_span_id`   String CODEC(ZSTD(1)),
    `name`             LowCardinality(String),
    `kind`             LowCardinality(String),
    `provider`         LowCardinality(String),
    `model`            LowCardinality(String),
    `request_model`    LowCardinality(String),
    `response_model`   LowCardinality(String),
    `start_time`       DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `end_time`         DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `duration_ms`      Float64 CODEC(ZSTD(1)),
    `ttft_ms`          Nullable(Float64),
    `status`           LowCardinality(String),
    `error_type`       LowCardinality(String),
    `error_message`    String CODEC(ZSTD(3)),
    `input_text`       String CODEC(ZSTD(3)),
    `output_text`      String CODEC(ZSTD(3)),
    `input_messages`   String CODEC(ZSTD(3)),
    `output_messages`  String CODEC(ZSTD(3)),
    `input_tokens`     UInt64 CODEC(T64, ZSTD(1)),
    `output_tokens`    UInt64 CODEC(T64, ZSTD(1)),
    `total_tokens`     UInt64 CODEC(T64, ZSTD(1)),
    `cost_usd`         Nullable(Float64),
    `temperature`      Nullable(Float64),
    `max_tokens`       Nullable(UInt32),
    `top_p`            Nullable(Float64),
    `finish_reason`    LowCardinality(String),
    `response_id`      String CODEC(ZSTD(1)),
    `user_id`          String CODEC(ZSTD(1)),
    `session_id`       String CODEC(ZSTD(1)),
    `prompt_name`      LowCardinality(String),
    `prompt_version`   LowCardinality(String),
    `convention`       LowCardinality(String),
    `stream`           Bool DEFAULT false,
    `tags`             Array(LowCardinality(String)),
    `attributes`       Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    `resource`         Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    `ingested_at`      DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1)),
    INDEX `idx_trace_id` `trace_id` TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX `idx_span_id` `span_id` TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX `idx_response_id` `response_id` TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX `idx_user_id` `user_id` TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX `idx_session_id` `session_id` TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX `idx_model` `model` TYPE set(256) GRANULARITY 4,
    INDEX `idx_service` `service` TYPE set(256) GRANULARITY 4,
    INDEX `idx_ingested_at` `ingested_at` TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toDate(`start_time`)
ORDER BY (`project`, toStartOfHour(`start_time`), `trace_id`, `span_id`)
TTL toDateTime(`start_time`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
;
CREATE TABLE IF NOT EXISTS {db}.`feedback` {on_cluster}
(
    `project`      LowCardinality(String),
    `trace_id`     String CODEC(ZSTD(1)),
    `span_id`      String CODEC(ZSTD(1)),
    `response_id`  String CODEC(ZSTD(1)),
    `kind`         LowCardinality(String),
    `value`        Float64,
    `comment`      String CODEC(ZSTD(3)),
    `user_id`      String CODEC(ZSTD(1)),
    `source`       LowCardinality(String),
    `created_at`   DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1)),
    `feedback_id`  String CODEC(ZSTD(1)),
    INDEX `idx_trace_id` `trace_id` TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX `idx_response_id` `response_id` TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(`created_at`)
PARTITION BY toYYYYMM(`created_at`)
ORDER BY (`project`, toStartOfHour(`created_at`), `kind`, `feedback_id`)
TTL toDateTime(`created_at`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
;
CREATE TABLE IF NOT EXISTS {db}.`scores` {on_cluster}
(
    `project`           LowCardinality(String),
    `trace_id`          String CODEC(ZSTD(1)),
    `span_id`           String CODEC(ZSTD(1)),
    `span_start_time`   DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `analyzer`          LowCardinality(String),
    `metric`            LowCardinality(String),
    `value`             Float64,
    `label`             LowCardinality(String),
    `analyzer_version`  LowCardinality(String),
    `created_at`        DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1)),
    INDEX `idx_trace_id` `trace_id` TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(`created_at`)
PARTITION BY toYYYYMM(`span_start_time`)
ORDER BY (`project`, toStartOfHour(`span_start_time`), `analyzer`, `metric`, `trace_id`, `span_id`)
TTL toDateTime(`span_start_time`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
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
    `created_at`      DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1))
)
ENGINE = ReplacingMergeTree(`created_at`)
PARTITION BY toYYYYMM(`window_start`)
ORDER BY (`project`, `window_start`, `segment`, `feature`, `method`)
TTL toDateTime(`window_start`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1
;
CREATE TABLE IF NOT EXISTS {db}.`alerts` {on_cluster}
(
    `project`      LowCardinality(String),
    `rule`         LowCardinality(String),
    `fingerprint`  String,
    `state`        LowCardinality(String),
    `severity`     LowCardinality(String),
    `value`        Float64,
    `threshold`    Float64,
    `message`      String CODEC(ZSTD(3)),
    `started_at`   DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1)),
    `resolved_at`  Nullable(DateTime64(6, 'UTC')),
    `notified`     Array(String),
    `created_at`   DateTime64(6, 'UTC') DEFAULT now64(6) CODEC(Delta(8), ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(`created_at`)
ORDER BY (`project`, `created_at`, `rule`, `fingerprint`)
TTL toDateTime(`created_at`) + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1

