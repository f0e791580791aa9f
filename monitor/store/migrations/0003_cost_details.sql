-- llm-monitor schema v3: the details behind spans.cost_usd (collectors/pricing.py).
-- cache_read_tokens / cache_write_tokens: prompt tokens served from / written to the provider's prompt cache
-- (included in input_tokens, per OTel GenAI); reasoning_tokens: included in output_tokens.
-- cost_source: 'provider' (reported by the instrumentation), 'price_table' (computed), '' (unpriced).
-- Idempotent: ADD COLUMN IF NOT EXISTS. Statements are separated by a line holding only ";".

ALTER TABLE {db}.`spans` {on_cluster}
    ADD COLUMN IF NOT EXISTS `cache_read_tokens`  UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER `total_tokens`,
    ADD COLUMN IF NOT EXISTS `cache_write_tokens` UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER `cache_read_tokens`,
    ADD COLUMN IF NOT EXISTS `reasoning_tokens`   UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER `cache_write_tokens`,
    ADD COLUMN IF NOT EXISTS `cost_source`        LowCardinality(String) DEFAULT '' AFTER `cost_usd`
