"""Building the scheduler from the configuration: which jobs exist, which are on, which can load.

Used by ``llm-monitor up`` (in-process, next to the collector) and ``llm-monitor analyze``. An analyzer
whose optional library is missing is left out with one log line when it runs by default, and is an error
when it was asked for by name (``--only``), like instrumentors.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from monitor import analyzers
from monitor.analyzers.base import AnalyzerConfigError
from monitor.analyzers.config import SchedulerConfig, read_config_section
from monitor.analyzers.scheduler import Job, Scheduler, SpanAnalyzerJob
from monitor.settings import ConfigError

if TYPE_CHECKING:
    from monitor.settings import Settings
    from monitor.store.client import Store

__all__ = ["JOBS", "build_scheduler", "known_jobs"]

log = logging.getLogger("llm_monitor.analyzers")

# Jobs that are not per-span analyzers: ``module:Class`` taking (settings: AnalyzerSettings, project: str).
JOBS: dict[str, str] = {
    "drift": "monitor.analyzers.drift:DriftJob",
    "acceptance": "monitor.analyzers.acceptance_job:AcceptanceJob",
}


def known_jobs() -> tuple[str, ...]:
    return (*analyzers.BUILTIN, *JOBS)


def _load_job(name: str, config: SchedulerConfig, settings: Settings) -> Job:
    job_settings = config.job(name)
    if name in analyzers.BUILTIN:
        cls = analyzers.load(name)
        try:
            analyzer = cls(job_settings.options)
        except AnalyzerConfigError as e:
            raise ConfigError(str(e)) from None
        return SpanAnalyzerJob(analyzer, job_settings)
    module_name, _, attr = JOBS[name].partition(":")
    job_cls: Any = getattr(importlib.import_module(module_name), attr)
    try:
        job: Job = job_cls(job_settings, settings)
    except AnalyzerConfigError as e:
        raise ConfigError(str(e)) from None
    return job


def build_scheduler(
    store: Store,
    settings: Settings,
    *,
    only: Iterable[str] | None = None,
    horizon: Callable[[], dt.datetime | None] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Scheduler:
    """A scheduler with every enabled job (or exactly ``only``); bad options raise ``ConfigError``.

    ``defaults`` are per-job options used where the config file does not set them (``up --demo`` asks for
    one-minute drift windows so a report appears within minutes).
    """
    section, where = read_config_section(settings.config_file)
    if defaults:
        merged: dict[str, Any] = dict(section) if isinstance(section, Mapping) else {}
        for job_name, opts in defaults.items():
            given = merged.get(job_name)
            if given is None or isinstance(given, Mapping):
                merged[job_name] = {**opts, **(given or {})}
        section = merged if (section is None or isinstance(section, Mapping)) else section
    config = SchedulerConfig.parse(section, known_jobs(), where)
    wanted = list(only) if only is not None else None
    if wanted is not None:
        unknown = [n for n in wanted if n not in known_jobs()]
        if unknown:
            raise ConfigError(f"unknown analyzer {unknown[0]!r} (known: {', '.join(known_jobs())})")
    jobs: list[Job] = []
    for name in known_jobs():
        if wanted is not None and name not in wanted:
            continue
        if wanted is None and not config.job(name).enabled:
            continue
        try:
            jobs.append(_load_job(name, config, settings))
        except ImportError as e:
            if wanted is not None:
                raise ConfigError(f"analyzer {name!r} cannot load: {e}") from None
            log.warning("analyzer %s is off: %s", name, e)
    return Scheduler(store, jobs, config, horizon=horizon)
