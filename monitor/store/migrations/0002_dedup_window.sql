-- llm-monitor schema v2: exactly-once replay of the collector's spool.
-- The collector inserts every batch with an insert_deduplication_token naming its spool range; after a
-- crash it re-inserts the unfinished range with the same token. ClickHouse drops a repeated token only
-- when the table remembers recent block ids: non-replicated MergeTree tables need this window (the
-- Replicated engines of cluster mode have replicated_deduplication_window, 1000 by default).
ALTER TABLE {db}.`spans` {on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000
;
ALTER TABLE {db}.`feedback` {on_cluster} MODIFY SETTING non_replicated_deduplication_window = 10000
