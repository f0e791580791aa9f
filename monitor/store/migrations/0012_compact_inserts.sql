-- llm-monitor schema v12: each collector insert into spans (20,000 rows by default) is written as a Compact
-- part: all columns in one data file instead of two files per column stream (a Wide part of this table,
-- with its Map, LowCardinality and skip-index streams, is 222 files; a Compact one is 14). Creating those
-- files was up to a tenth of the embedded collector's CPU under sustained load, most of it in the filesystem's inode
-- allocator, which slows further while merges delete old parts (benchmarks/README.md, "Session 12").
-- Parts of more than 128 MiB uncompressed (≈ 58,000 spans of ≈ 2.2 KiB), i.e. merges of a few inserts,
-- are written Wide as before, so long-lived parts keep one file per column for queries.
-- Statements are separated by a line holding only ";".
ALTER TABLE {db}.`spans` {on_cluster} MODIFY SETTING min_bytes_for_wide_part = 134217728
