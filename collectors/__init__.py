"""The collector: OTLP/HTTP in, normalized ``spans`` rows out (DESIGN §3).

Layout, in the order data flows through it:

- :mod:`collectors.server`    ``CollectorServer``: HTTP endpoints, auth, limits, back-pressure, graceful stop
- :mod:`collectors.otlp`      protobuf / OTLP-JSON / gzip decoding into plain ``Span`` objects
- :mod:`collectors.normalize` one ``Normalizer`` per convention, tried in order, plus the shared pipeline
- :mod:`collectors.writer`    ``BatchWriter`` (bounded queue, one flushing thread) in front of a ``Writer``
- :mod:`collectors.spool`     the write-ahead log (segments, CRC, group-commit fsync, checkpoint + intent)
- :mod:`collectors.spooled_writer` ``SpooledBatchWriter``: acknowledge after the spool, replay exactly once
- :mod:`collectors.testing`   payload builders for tests and benchmarks

Nothing here is imported by applications; the SDK (``monitor``) never depends on this package.
"""
