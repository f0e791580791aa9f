"""Cost of LLM and embedding calls: a shipped price table, user overrides, and provider-reported cost.

DESIGN §3: cost is computed from a model price table keyed by the response model, then the request model;
users extend it under ``prices:`` in ``llm-monitor.yaml``; a cost the instrumentation reported itself wins;
calls we cannot price keep ``cost_usd`` NULL and are counted per model, never silently $0.

The formula, with prices in USD per 1M tokens::

    uncached = input - cache_read - cache_write
    cost     = (uncached * input_price + cache_read * cached_input_price
                + cache_write * cache_write_price + output * output_price) / 1e6

OTel GenAI says ``gen_ai.usage.input_tokens`` SHOULD include cached tokens (reads and writes), so they are
taken out of the input before the input price applies. When the cache counts exceed the input count the
sender evidently reported input *without* them (Anthropic's native usage does that): the input is then
priced as uncached in full. Reasoning tokens are part of the output and billed at the output price; they
are only copied into ``reasoning_tokens``. A missing ``cached_input`` / ``cache_write`` price means the
model has no cache discount: those tokens cost the input price.

Which rows: ``kind`` ``llm`` and ``embedding``. A call with no usage at all (a stream without usage, an
instrumentation that records none) has an unknown cost, so NULL (counted as ``no_usage``), except a failed
call: providers do not bill failed requests, so a priced model's error without usage costs 0.

Provider-reported cost: a ``cost_usd`` a normalizer already set, else ``gen_ai.usage.cost`` (OpenLIT),
``llm.cost.total`` (OpenInference) or ``langfuse.observation.cost_details`` left in the attributes. A
reported cost of exactly 0 on a call that used tokens is ignored: OpenLIT reports 0 for models its own
list lacks, which is the silent $0 this module exists to prevent.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import semconv as sc
from monitor.settings import ConfigError, read_section

if TYPE_CHECKING:
    from monitor.settings import Settings

log = logging.getLogger("llm_monitor.collector")

PRICES_FILE = "prices.json"
PRICED_KINDS = frozenset({"llm", "embedding"})
PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
REQUIRED_FIELDS = ("input", "output")

# Attribute keys read from ``row["attributes"]`` (whatever the normalizers left unmapped), first present wins.
CACHE_READ_KEYS = (
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,  # OTel GenAI >= 1.37, OpenLLMetry current
    "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry legacy
    "llm.token_count.prompt_details.cache_read",  # OpenInference
)
CACHE_WRITE_KEYS = (
    sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_KEYS = (
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",  # OpenLLMetry current, OpenLIT
    "llm.usage.reasoning_tokens",  # OpenLLMetry legacy
    "llm.token_count.completion_details.reasoning",  # OpenInference
)
PROVIDER_COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total")  # OpenLIT, OpenInference (USD)
LANGFUSE_COST_DETAILS = "langfuse.observation.cost_details"  # JSON {"total": x} or {"input": x, ...}

_ANY_KEY = frozenset(
    (*CACHE_READ_KEYS, *CACHE_WRITE_KEYS, *REASONING_KEYS, *PROVIDER_COST_KEYS, LANGFUSE_COST_DETAILS)
)


def _load_native_price() -> Any:
    """``price_usual`` from the normalizer's extension, unless it is not built or switched off (the same
    switch as the native mapping: ``LLM_MONITOR_NATIVE_NORMALIZE=0``)."""
    from collectors.normalize._native import _disabled_by_env

    if _disabled_by_env():
        return None
    try:
        from collectors import _normalize_native  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_normalize_native, "price_usual", None)


_native_price: Any = _load_native_price()  # tests set it to None to compare with the Python path

SOURCE_PROVIDER = "provider"
SOURCE_PRICE_TABLE = "price_table"

# Bounds that keep memory flat whatever model names senders invent.
MAX_RESOLVED = 10_000  # model name → price cache entries
MAX_UNPRICED_MODELS = 200  # distinct model labels on /metrics; the rest count under OTHER
OTHER = "__other__"

# Snapshot / version suffixes stripped (repeatedly) to find a model's family price:
# -2024-07-18, -20241022, @20241022 (Vertex), -0125 / -2411, -001, -latest, -preview[-05-20], -exp[-1206],
# -v2 / -v1:0 (Bedrock).
_SUFFIX = re.compile(
    r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest|preview(?:-\d{2}-\d{2})?|exp(?:-\d{2}-\d{2})?"
    r"|v\d+(?::\d+)?))$"
)
# Bedrock ids: optional cross-region prefix, then the vendor: us.anthropic.claude-..., meta.llama3-...
_REGION = re.compile(r"^(?:us|eu|apac|us-gov|global)\.(.+)$")
_VENDOR = re.compile(r"^(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|google|openai)\.(.+)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. ``cached_input``/``cache_write`` default to ``input`` (no cache discount)."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    source: str = ""
    key: str = ""  # the table entry that matched, for reports

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        """USD for one call; see the module docstring for why cache tokens are taken out of the input."""
        uncached = input_tokens - cache_read - cache_write
        if uncached < 0:  # the sender reported input without the cached tokens
            uncached = input_tokens
        usd = (
            uncached * self.input
            + cache_read * self.cached_input
            + cache_write * self.cache_write
            + output_tokens * self.output
        ) / 1e6
        return round(usd, 12)  # below a picodollar is float noise; rounding keeps sums readable


def _number(model: str, field: str, v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError(
            f"{where}: prices: {model!r}: {field} must be a number (USD per 1M tokens), got {v!r}"
        )
    try:
        x = float(v)
    except ValueError:
        raise ConfigError(
            f"{where}: prices: {model!r}: {field} must be a number (USD per 1M tokens), got {v!r}"
        ) from None
    if not math.isfinite(x) or x < 0:
        raise ConfigError(f"{where}: prices: {model!r}: {field} must be a finite number >= 0, got {v!r}")
    return x


def parse_entry(model: str, entry: Any, where: str, *, extra_keys: Iterable[str] = ()) -> Price:
    """One table entry → :class:`Price`; a bad entry is a one-line :class:`ConfigError` naming model and field."""
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{where}: prices: {model!r} must be a mapping like {{input: 2.5, output: 10, cached_input: 1.25}}"
        )
    allowed = set(PRICE_FIELDS) | set(extra_keys)
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{where}: prices: {model!r}: unknown field {unknown[0]!r} (known: {', '.join(PRICE_FIELDS)})"
        )
    for f in REQUIRED_FIELDS:
        if f not in entry:
            raise ConfigError(f"{where}: prices: {model!r}: missing {f} (USD per 1M tokens; 0 if free)")
    inp = _number(model, "input", entry["input"], where)
    out = _number(model, "output", entry["output"], where)
    cached = _number(model, "cached_input", entry["cached_input"], where) if "cached_input" in entry else inp
    write = _number(model, "cache_write", entry["cache_write"], where) if "cache_write" in entry else inp
    return Price(inp, out, cached, write, str(entry.get("source", "")), model)


def _model_key(model: Any, where: str) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: prices: model names must be non-empty strings, got {model!r}")
    return model.strip().lower()


def load_shipped() -> dict[str, Price]:
    """The table shipped in ``collectors/prices.json`` (aliases resolved)."""
    raw = json.loads(resources.files("collectors").joinpath(PRICES_FILE).read_text(encoding="utf-8"))
    entries: dict[str, Any] = raw["models"]
    out: dict[str, Price] = {}
    for model, entry in entries.items():
        if "alias_of" not in entry:
            out[model.lower()] = parse_entry(
                model, entry, PRICES_FILE, extra_keys=("source", "note", "provider")
            )
    for model, entry in entries.items():
        if "alias_of" in entry:
            out[model.lower()] = out[entry["alias_of"].lower()]
    return out


def read_config_prices(config_file: str | Path | None) -> dict[str, Price]:
    """The ``prices:`` section of the YAML config (empty when there is none); validated here, once."""
    section, where = read_section(config_file, "prices")
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: prices: expected a mapping of model: {{input, output, cached_input}}")
    return {_model_key(m, where): parse_entry(str(m), e, where) for m, e in section.items()}


def candidates(model: str) -> list[str]:
    """Names to try for ``model``, most specific first: as given, without provider prefixes, then with
    snapshot suffixes stripped one at a time (so a snapshot with its own price wins over its family)."""
    s = model.strip().lower()
    bases = [s]
    parts = s.split("/")
    bases.extend("/".join(parts[i:]) for i in range(1, len(parts)))  # openai/gpt-4o, azure/..., models/...
    for b in list(bases):
        m = _REGION.match(b)
        if m:
            b = m.group(1)
            bases.append(b)
        m = _VENDOR.match(b)
        if m:
            bases.append(m.group(1))
    chains: list[list[str]] = []
    for b in bases:
        chain = [b]
        while (stripped := _SUFFIX.sub("", chain[-1])) not in ("", chain[-1]):
            chain.append(stripped)
        chains.append(chain)
    out: list[str] = []
    for depth in range(max(len(c) for c in chains)):  # every prefix variant before the next suffix strip
        for c in chains:
            if depth < len(c) and c[depth] not in out:
                out.append(c[depth])
    return out


class PriceTable:
    """Shipped prices plus user overrides, with a bounded cache of resolved model names.

    Thread-safety: :meth:`lookup` may be called from any thread (the cache is a plain dict whose entries
    are computed idempotently; a race only computes one twice). Immutable otherwise.
    """

    def __init__(self, shipped: Mapping[str, Price], overrides: Mapping[str, Price] | None = None) -> None:
        self.shipped = dict(shipped)
        self.overrides = dict(overrides or {})
        self._resolved: dict[str, Price | None] = {}

    @classmethod
    def load(cls, config_file: str | Path | None = None) -> PriceTable:
        return cls(load_shipped(), read_config_prices(config_file))

    def __len__(self) -> int:
        return len(self.shipped.keys() | self.overrides.keys())

    def lookup(self, model: str) -> Price | None:
        """The price of ``model`` (any case, provider prefix or snapshot suffix), or None when unknown."""
        if not model:
            return None
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = None
        for name in candidates(model):
            price = self.overrides.get(name) or self.shipped.get(name)
            if price is not None:
                break
        if len(self._resolved) >= MAX_RESOLVED:
            self._resolved.clear()
        self._resolved[model] = price
        return price


def _int_attr(attrs: dict[str, str], keys: tuple[str, ...]) -> int:
    """Pop ``keys`` (they become a column) and return the first one's value as a non-negative int."""
    found = 0
    seen = False
    for k in keys:
        v = attrs.pop(k, None)
        if v is None or seen:
            continue
        try:
            n = int(v)
        except ValueError:
            try:
                n = int(float(v))
            except (ValueError, OverflowError):
                attrs[k] = v  # not a count after all: keep it visible
                continue
        if n >= 0:
            found, seen = n, True
    return found


def _float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def _reported_cost(attrs: dict[str, str]) -> float | None:
    """A provider/instrumentation-reported cost left in the attributes (popped when used)."""
    for k in PROVIDER_COST_KEYS:
        if k in attrs:
            x = _float(attrs[k])
            if x is not None:
                del attrs[k]
                return x
    raw = attrs.get(LANGFUSE_COST_DETAILS)
    if raw is not None:
        try:
            details = json.loads(raw)
        except ValueError:
            return None
        if isinstance(details, dict):
            total = _float(details.get("total"))
            if total is None:
                parts = [_float(v) for v in details.values()]
                total = sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
            if total is not None:
                del attrs[LANGFUSE_COST_DETAILS]
                return total
    return None


class Pricer:
    """Fills ``cost_usd``, ``cost_source`` and the cache/reasoning token columns of normalized rows.

    Called by the collector's request threads right after normalization (:meth:`apply`), so it is pure
    CPU: one cached dict lookup per priced row, counters merged under a lock once per request.
    """

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        self._lock = threading.Lock()
        self._unpriced: dict[tuple[str, str], int] = {}
        self._priced: dict[str, int] = {SOURCE_PROVIDER: 0, SOURCE_PRICE_TABLE: 0}
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Pricer:
        """Shipped table + the ``prices:`` section of the settings' config file (ConfigError when bad)."""
        return cls(PriceTable.load(settings.config_file))

    def price_row(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """Price one row in place; returns ``(model, reason)`` when a call stays unpriced."""
        if row.get("cost_source"):
            return None  # priced already (a row re-emitted with late content keeps its cost)
        attrs = row.get("attributes")
        if attrs and not _ANY_KEY.isdisjoint(attrs):  # one pass over the keys; most rows have none of ours
            if not row.get("cache_read_tokens"):
                row["cache_read_tokens"] = _int_attr(attrs, CACHE_READ_KEYS)
            if not row.get("cache_write_tokens"):
                row["cache_write_tokens"] = _int_attr(attrs, CACHE_WRITE_KEYS)
            if not row.get("reasoning_tokens"):
                row["reasoning_tokens"] = _int_attr(attrs, REASONING_KEYS)
            if row.get("cost_usd") is None:
                row["cost_usd"] = _reported_cost(attrs)
        inp, out = row.get("input_tokens", 0), row.get("output_tokens", 0)
        reported = row.get("cost_usd")
        if reported is not None:
            if reported > 0 or not (inp or out):
                row["cost_source"] = SOURCE_PROVIDER
                return None
            row["cost_usd"] = None  # a reported 0 for a call that used tokens: the reporter did not know
        if row.get("kind") not in PRICED_KINDS:
            return None
        price = (
            self.table.lookup(row.get("response_model", ""))
            or self.table.lookup(row.get("request_model", ""))
            or self.table.lookup(row.get("model", ""))
        )
        model = row.get("model") or row.get("response_model") or row.get("request_model") or ""
        if price is None:
            return model, "unknown_model"
        if not (inp or out):
            if row.get("status") != "error":
                return model, "no_usage"
            row["cost_usd"] = 0.0  # failed requests are not billed
        else:
            row["cost_usd"] = price.cost(
                inp, out, row.get("cache_read_tokens", 0), row.get("cache_write_tokens", 0)
            )
        row["cost_source"] = SOURCE_PRICE_TABLE
        return None

    def apply(self, rows: list[dict[str, Any]]) -> None:
        """Price every row of one request in place and count what stayed unpriced.

        The usual row (a fresh one from the normalizers: every column present, nothing priced yet, none of
        the attribute keys above) takes an inlined copy of :meth:`price_row`'s path, its price resolved once
        per (response model, request model, model) in the request: in C when the normalizer's extension is
        built (``price_usual``, plain int counts only, costs identical to the bit), else in the loop below;
        anything else goes through :meth:`price_row`. Same results every way (``tests/unit/test_pricing.py``
        compares them on both paths).
        """
        unpriced: dict[tuple[str, str], int] = {}
        priced = {SOURCE_PROVIDER: 0, SOURCE_PRICE_TABLE: 0}
        n_table = 0
        memo: dict[tuple[str, str, str], Price | None] = {}
        lookup = self.table.lookup
        native = _native_price
        if native is not None and isinstance(rows, list):
            # the usual rows in C (collectors/_normalize_native.c: price_usual, the same arithmetic); what
            # it leaves (no usage, unknown model, any odd shape) takes the Python path below, untouched
            def rates(names: tuple[str, str, str]) -> tuple[float, float, float, float] | None:
                p = lookup(names[0]) or lookup(names[1]) or lookup(names[2])
                return None if p is None else (p.input, p.cached_input, p.cache_write, p.output)

            n_table, rows = native(rows, {}, rates, _ANY_KEY, PRICED_KINDS, SOURCE_PRICE_TABLE)
        for row in rows:
            try:
                usual = (
                    not row["cost_source"]
                    and row["cost_usd"] is None
                    and (not (attrs := row["attributes"]) or _ANY_KEY.isdisjoint(attrs))
                )
            except KeyError:
                usual = False
            if usual:
                if row["kind"] not in PRICED_KINDS:
                    continue
                inp, out = row["input_tokens"], row["output_tokens"]
                if inp or out:
                    names = (row["response_model"], row["request_model"], row["model"])
                    try:
                        price = memo[names]
                    except KeyError:
                        price = memo[names] = lookup(names[0]) or lookup(names[1]) or lookup(names[2])
                    if price is not None:
                        row["cost_usd"] = price.cost(
                            inp, out, row["cache_read_tokens"], row["cache_write_tokens"]
                        )
                        row["cost_source"] = SOURCE_PRICE_TABLE
                        n_table += 1
                        continue
            miss = self.price_row(row)
            if miss is not None:
                unpriced[miss] = unpriced.get(miss, 0) + 1
            elif row.get("cost_source"):
                priced[row["cost_source"]] += 1
        priced[SOURCE_PRICE_TABLE] += n_table
        if not unpriced and not priced[SOURCE_PROVIDER] and not priced[SOURCE_PRICE_TABLE]:
            return
        with self._lock:
            for src, n in priced.items():
                self._priced[src] += n
            for (model, reason), n in unpriced.items():
                key = (model, reason)
                if key not in self._unpriced and len(self._unpriced) >= MAX_UNPRICED_MODELS:
                    key = (OTHER, reason)
                self._unpriced[key] = self._unpriced.get(key, 0) + n
                if reason == "unknown_model" and model not in self._warned and len(self._warned) < 100:
                    self._warned.add(model)
                    log.info(
                        "no price for model %r: its calls keep cost_usd NULL; add it under `prices:` "
                        "in llm-monitor.yaml (USD per 1M tokens)",
                        model,
                    )

    def unpriced(self) -> dict[tuple[str, str], int]:
        """``(model, reason) → spans`` so far (reason ``unknown_model`` or ``no_usage``)."""
        with self._lock:
            return dict(self._unpriced)

    def metric_lines(self, prefix: str) -> list[str]:
        """Prometheus families for ``/metrics`` (names start with ``prefix``)."""
        with self._lock:
            unpriced = sorted(self._unpriced.items())
            priced = sorted(self._priced.items())
        name = f"{prefix}unpriced_spans_total"
        lines = [
            f"# HELP {name} LLM/embedding spans left with cost_usd NULL, by model and reason "
            "(unknown_model: add a price under `prices:`; no_usage: the call reported no tokens).",
            f"# TYPE {name} counter",
        ]
        lines += [
            f'{name}{{model="{prom_escape(m or "(none)")}",reason="{r}"}} {n}' for (m, r), n in unpriced
        ]
        name = f"{prefix}priced_spans_total"
        lines += [
            f"# HELP {name} Spans given a cost, by where it came from (provider-reported or the price table).",
            f"# TYPE {name} counter",
        ]
        lines += [f'{name}{{source="{s}"}} {n}' for s, n in priced]
        return lines


def prom_escape(v: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
