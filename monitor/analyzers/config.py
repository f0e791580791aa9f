"""The ``analyzers:`` section of ``llm-monitor.yaml``, validated once into frozen objects.

::

    analyzers:
      interval: 30           # seconds between two runs of each analyzer (default for all)
      batch_size: 500        # spans per batch
      settle_seconds: 2      # leave spans ingested in the last N seconds for the next run
      toxicity:
        enabled: true
        interval: 60
        batch_size: 256
        sample_rate: 1.0     # share of spans scored, chosen by span id hash (re-runs pick the same)
        threshold: 0.5       # anything else is the analyzer's own option
      pii: {enabled: false}

Keys ``enabled``, ``interval``, ``batch_size`` and ``sample_rate`` belong to the scheduler; every other key
under an analyzer's name is passed to the analyzer, which validates it. A bad value is one
:class:`~monitor.settings.ConfigError` line naming the file and key; nothing is half-applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.settings import ConfigError, read_section

__all__ = ["AnalyzerSettings", "SchedulerConfig", "read_config_section"]

JOB_KEYS = ("enabled", "interval", "batch_size", "sample_rate")
GLOBAL_KEYS = ("interval", "batch_size", "settle_seconds")
DEFAULT_INTERVAL = 30.0
DEFAULT_BATCH_SIZE = 500
DEFAULT_SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class AnalyzerSettings:
    """What the scheduler needs to run one job, plus the job's own options."""

    name: str
    enabled: bool = True
    interval: float = DEFAULT_INTERVAL
    batch_size: int = DEFAULT_BATCH_SIZE
    sample_rate: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerConfig:
    jobs: Mapping[str, AnalyzerSettings]
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def job(self, name: str) -> AnalyzerSettings:
        return self.jobs.get(name) or AnalyzerSettings(name)

    @classmethod
    def parse(cls, section: Any, known: tuple[str, ...], where: str = "llm-monitor.yaml") -> SchedulerConfig:
        """Validate ``section`` (the YAML mapping, or None) for the job names in ``known``."""
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: analyzers: expected a mapping of analyzer name: options")
        unknown = sorted(str(k) for k in section if k not in known and k not in GLOBAL_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: analyzers: unknown analyzer {unknown[0]!r} (known: {', '.join(known)}; "
                f"scheduler keys: {', '.join(GLOBAL_KEYS)})"
            )
        interval = _number(section, "interval", DEFAULT_INTERVAL, where, "analyzers", minimum=0.1)
        batch = _integer(section, "batch_size", DEFAULT_BATCH_SIZE, where, "analyzers")
        settle = _number(section, "settle_seconds", DEFAULT_SETTLE_SECONDS, where, "analyzers", minimum=0.0)
        jobs = {}
        for name in known:
            raw = section.get(name)
            if raw is None:
                raw = {}
            if isinstance(raw, bool):
                raw = {"enabled": raw}
            if not isinstance(raw, Mapping):
                raise ConfigError(
                    f"{where}: analyzers: {name}: expected a mapping of options (or true/false)"
                )
            ctx = f"analyzers: {name}"
            enabled = raw.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{where}: {ctx}: enabled must be true or false, got {enabled!r}")
            rate = _number(raw, "sample_rate", 1.0, where, ctx, minimum=0.0)
            if rate > 1.0:
                raise ConfigError(f"{where}: {ctx}: sample_rate must be between 0 and 1, got {rate!r}")
            jobs[name] = AnalyzerSettings(
                name=name,
                enabled=enabled,
                interval=_number(raw, "interval", interval, where, ctx, minimum=0.1),
                batch_size=_integer(raw, "batch_size", batch, where, ctx),
                sample_rate=rate,
                options={k: v for k, v in raw.items() if k not in JOB_KEYS},
            )
        return cls(jobs=jobs, settle_seconds=settle)


def _number(m: Mapping[str, Any], key: str, default: float, where: str, ctx: str, *, minimum: float) -> float:
    v = m.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < minimum:
        raise ConfigError(f"{where}: {ctx}: {key} must be a number >= {minimum:g}, got {v!r}")
    return float(v)


def _integer(m: Mapping[str, Any], key: str, default: int, where: str, ctx: str) -> int:
    v = m.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: {ctx}: {key} must be a whole number >= 1, got {v!r}")
    return v


def read_config_section(config_file: str | Path | None, name: str = "analyzers") -> tuple[Any, str]:
    """``(section, where)`` of the YAML config (``(None, ...)`` without a file or section)."""
    return read_section(config_file, name)
