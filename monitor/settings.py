"""Server-side configuration: one frozen :class:`Settings`, resolved once at start-up.

Precedence, highest first: explicit argument (CLI flag) > environment variable ``LLM_MONITOR_<NAME>`` >
the YAML config file (``--config``, ``LLM_MONITOR_CONFIG``, or ``./llm-monitor.yaml`` when present) >
the default below. Every setting is declared once in :data:`FIELDS`; the README's configuration table is
generated from the same list (``llm-monitor config --markdown``), so the two cannot drift apart.

A bad value raises :class:`ConfigError` whose message is one line naming the setting, where the value
came from and what was expected. Callers print it and exit non-zero; nothing on a hot path re-validates.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "LLM_MONITOR_"
DEFAULT_CONFIG_FILE = "llm-monitor.yaml"


class ConfigError(ValueError):
    """A configuration value is invalid. ``str(err)`` is one line meant for the user."""


def default_store_url() -> str:
    """``chdb:///<user data dir>/llm-monitor/store``; the data dir follows the platform's conventions."""
    try:
        from platformdirs import user_data_dir

        base = Path(user_data_dir("llm-monitor", appauthor=False))
    except ImportError:  # light SDK install: the server extra is absent, but a URL is still wanted
        base = Path.home() / ".local" / "share" / "llm-monitor"
    return f"chdb://{base / 'store'}"


# --- value parsers: each takes the raw value (str from env, any from YAML) and returns the typed value --


def _as_str(v: Any) -> str:
    if isinstance(v, (dict, list)):
        raise ValueError("expected a string")
    return str(v)


def _as_int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("expected an integer")
        try:
            n = int(str(v).strip().replace("_", ""))
        except ValueError:
            raise ValueError("expected an integer") from None
        if lo is not None and n < lo:
            raise ValueError(f"must be >= {lo}")
        if hi is not None and n > hi:
            raise ValueError(f"must be <= {hi}")
        return n

    return parse


def _as_float(lo: float | None = None) -> Callable[[Any], float]:
    def parse(v: Any) -> float:
        if isinstance(v, bool):
            raise ValueError("expected a number")
        try:
            x = float(str(v).strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if lo is not None and x < lo:
            raise ValueError(f"must be >= {lo}")
        return x

    return parse


def _as_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _as_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, (list, tuple)):
        items = [str(x).strip() for x in v]
    elif isinstance(v, str):
        items = [x.strip() for x in v.split(",")]
    else:
        raise ValueError("expected a comma-separated list")
    return tuple(x for x in items if x)


def _as_store_url(v: Any) -> str:
    s = _as_str(v).strip()
    if s.startswith("chdb://"):
        path = s[len("chdb://") :].split("?", 1)[0]
        if not path.startswith("/"):
            raise ValueError("a chdb URL needs an absolute path: chdb:///abs/path")
        return s
    if s.startswith(("http://", "https://")):
        return s
    raise ValueError("expected chdb:///abs/path or http(s)://user:pass@host:8123/db")


def _as_spool_dir(v: Any) -> str:
    s = _as_str(v).strip()
    if s and s.lower() != "off" and not os.path.isabs(os.path.expanduser(s)):
        raise ValueError("expected an absolute directory, empty (automatic) or off")
    return "off" if s.lower() == "off" else os.path.expanduser(s)


def _as_identifier(v: Any) -> str:
    s = _as_str(v).strip()
    if not s or not all(c.isalnum() or c == "_" for c in s):
        raise ValueError("expected letters, digits and underscores only")
    return s


def _as_log_level(v: Any) -> str:
    s = _as_str(v).strip().upper()
    if s not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return s


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


FIELDS: tuple[Field, ...] = (
    Field(
        "store",
        _as_store_url,
        None,
        "Store URL: `chdb:///abs/path` (embedded, default under the user data dir) or `http(s)://user:pass@host:8123/db`.",
    ),
    Field(
        "database",
        _as_identifier,
        "llm_monitor",
        "ClickHouse database holding the tables (ignored when an http URL names one).",
    ),
    Field(
        "project",
        _as_str,
        "default",
        "Project name stamped on rows whose spans do not carry `llm_monitor.project`.",
    ),
    Field("retention_days", _as_int(1, 36500), 30, "Days rows are kept (table TTL, whole parts dropped)."),
    Field("host", _as_str, "127.0.0.1", "Collector bind address."),
    Field("port", _as_int(0, 65535), 4318, "Collector OTLP/HTTP port."),
    Field("dashboard_host", _as_str, "127.0.0.1", "Dashboard bind address."),
    Field("dashboard_port", _as_int(0, 65535), 8501, "Dashboard port."),
    Field(
        "batch_size",
        _as_int(1, 1_000_000),
        20000,
        "Rows per store insert (chDB pays ~70 ms per insert, so large batches are far cheaper per row): "
        "a batch is written when it holds this many rows...",
    ),
    Field(
        "flush_interval",
        _as_float(0.01),
        1.0,
        "...or when its oldest row is this many seconds old, or (1,000 rows or more) 50 ms after the last one came.",
    ),
    Field(
        "queue_max_rows",
        _as_int(1, 100_000_000),
        200_000,
        "Rows the collector holds in memory before it answers 503 (back-pressure).",
    ),
    Field(
        "spool_dir",
        _as_spool_dir,
        "",
        "Collector write-ahead spool (acknowledged spans wait here, fsynced, until stored). Empty: "
        "`<store dir>.spool/<database>` for a chdb store, the user data dir for a server; `off`: memory only.",
    ),
    Field(
        "spool_max_bytes",
        _as_int(1 << 16, 1 << 50),
        1 << 30,
        "Disk the spool may use; when full (store down for long) the collector answers 503 + Retry-After.",
    ),
    Field(
        "spool_fsync",
        _as_bool,
        True,
        "fsync the spool before acknowledging (group commit); false survives a process crash, not power loss.",
    ),
    Field(
        "max_body_bytes",
        _as_int(1024, 1 << 31),
        16 * 1024 * 1024,
        "Largest request body accepted, after gunzip (413 beyond).",
    ),
    Field(
        "cors_origins",
        _as_list,
        ("*",),
        "Comma-separated origins allowed to call `/v1/feedback` from a browser (CORS); `*` allows any.",
    ),
    Field(
        "api_keys",
        _as_list,
        (),
        "Comma-separated API keys; when set, requests need `Authorization: Bearer <key>` or `x-api-key`.",
    ),
    Field("log_level", _as_log_level, "INFO", "DEBUG, INFO, WARNING or ERROR."),
)
_BY_NAME = {f.name: f for f in FIELDS}


@dataclasses.dataclass(frozen=True)
class Settings:
    store: str
    database: str
    project: str
    retention_days: int
    host: str
    port: int
    dashboard_host: str
    dashboard_port: int
    batch_size: int
    flush_interval: float
    queue_max_rows: int
    spool_dir: str
    spool_max_bytes: int
    spool_fsync: bool
    max_body_bytes: int
    cors_origins: tuple[str, ...]
    api_keys: tuple[str, ...]
    log_level: str
    config_file: str | None = None

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Resolve every field. ``overrides`` are CLI arguments; ``None`` values mean "not given"."""
        env = os.environ if environ is None else environ
        path = _config_path(config_file, env)
        file_values = _read_yaml(path) if path else {}
        values: dict[str, Any] = {}
        for f in FIELDS:
            given = (overrides or {}).get(f.name)
            if given is not None:
                raw, origin = given, f"--{f.name.replace('_', '-')}"
            elif f.env in env:
                raw, origin = env[f.env], f.env
            elif f.name in file_values:
                raw, origin = file_values[f.name], f"{path}: {f.name}"
            else:
                values[f.name] = default_store_url() if f.name == "store" else f.default
                continue
            try:
                values[f.name] = f.parse(raw)
            except ValueError as e:
                raise ConfigError(f"invalid {origin}={raw!r}: {e}") from None
        return cls(**values, config_file=str(path) if path else None)

    def with_overrides(self, **kw: Any) -> Settings:
        """A copy with some fields replaced, each value validated like any other source."""
        parsed = {}
        for k, v in kw.items():
            if k not in _BY_NAME:
                raise ConfigError(f"unknown setting {k!r}")
            try:
                parsed[k] = _BY_NAME[k].parse(v)
            except ValueError as e:
                raise ConfigError(f"invalid {k}={v!r}: {e}") from None
        return dataclasses.replace(self, **parsed)


def _config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    if env.get(ENV_PREFIX + "CONFIG"):
        p = Path(env[ENV_PREFIX + "CONFIG"])
        if not p.is_file():
            raise ConfigError(f"config file {p} (from {ENV_PREFIX}CONFIG) does not exist")
        return p
    p = Path(DEFAULT_CONFIG_FILE)
    return p if p.is_file() else None


def _load_yaml(path: Path) -> Any:
    """The parsed YAML document at ``path``; any problem is one ConfigError line naming file and line."""
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"reading {path} needs PyYAML: pip install 'llm-monitor[server]'") from None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = _load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value at the top level")
    # Sections owned by later subsystems (alerts, analyzers, prices) are validated by those subsystems.
    sections = {"alerts", "analyzers", "prices", "channels"}
    unknown = sorted(k for k in data if k not in _BY_NAME and k not in sections)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(_BY_NAME))})")
    return {k: v for k, v in data.items() if k in _BY_NAME}


def read_section(config_file: str | os.PathLike[str] | None, name: str) -> tuple[Any, str]:
    """``(section, where)``: the top-level ``name`` mapping of the YAML config, for the subsystems that own
    a section (``prices``, ``analyzers``…); ``(None, where)`` without a file or section. One
    :class:`ConfigError` line when the file cannot be read or parsed."""
    if not config_file:
        return None, DEFAULT_CONFIG_FILE
    path = Path(config_file)
    data = _load_yaml(path)
    return (data.get(name) if isinstance(data, dict) else None), str(path)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for f in FIELDS:
        default = (
            "user data dir"
            if f.name == "store"
            else (",".join(f.default) if isinstance(f.default, tuple) else f.default)
        )
        rows.append(f"| `{f.name}` | `{f.env}` | `{default}` | {f.help} |")
    return "\n".join(rows)
