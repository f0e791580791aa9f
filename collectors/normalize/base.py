"""The :class:`Normalizer` seam and the ordered registry that picks one per span.

Instrumentations disagree on attribute names (reference §6), so each convention gets one small class
that recognises its spans and maps them onto the ``spans`` columns. The registry tries them in a fixed
order and the first whose :meth:`Normalizer.matches` says yes wins (reference §7 rule 2: the most
specific conventions first, because OpenLLMetry, OpenLIT and our own SDK also carry ``gen_ai.*`` keys);
a generic fallback takes whatever nobody claimed.

Built-ins are listed as import strings and loaded when the registry is first built; third-party
normalizers plug in through the ``llm_monitor.normalizers`` entry-point group and are tried before the
built-ins (they are more specific by construction).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from collectors.otlp import Span

log = logging.getLogger("llm_monitor.collector")

ENTRY_POINT_GROUP = "llm_monitor.normalizers"

# Order matters: first match wins (reference §7 rule 2). Our own SDK first (its scope is unambiguous);
# then langfuse.observation.* (an explicit statement by the app), openinference.span.kind; then the
# dialects of OTel GenAI that carry gen_ai.operation.name too (OpenLIT, OpenLLMetry, recognised by their
# own marker keys) before plain OTel GenAI would swallow them. traceloop.span.kind and llm.request.type
# spans without gen_ai keys are OpenLLMetry's as well.
BUILTIN_NORMALIZERS: tuple[str, ...] = (
    "collectors.normalize.llm_monitor:LLMMonitorNormalizer",
    "collectors.normalize.langfuse:LangfuseNormalizer",
    "collectors.normalize.openinference:OpenInferenceNormalizer",
    "collectors.normalize.openlit:OpenLITNormalizer",
    "collectors.normalize.openllmetry:OpenLLMetryNormalizer",
    "collectors.normalize.otel_genai:OTelGenAINormalizer",
)
FALLBACK_NORMALIZER = "collectors.normalize.generic:GenericNormalizer"


class Normalizer(ABC):
    """Maps the spans of one convention onto ``spans`` columns.

    Contract:
    - Called concurrently from the collector's request threads: keep no per-call state on ``self``.
    - Pure: no I/O, no clock, no globals mutated; never blocks.
    - Must not raise on odd values: an attribute of the wrong type or shape is ignored (left in
      ``attrs``, so it is stored verbatim in ``spans.attributes``), never fatal. The pipeline still
      guards each call and falls back to the generic mapping if one does raise (a bug, logged).
    """

    #: the ``spans.convention`` value written for spans this normalizer claims
    convention: ClassVar[str] = "unknown"

    @abstractmethod
    def matches(self, span: Span) -> bool:
        """Whether this convention produced ``span``. Cheap: it runs for every span until one matches."""

    @abstractmethod
    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        """Fill ``row`` from ``span``.

        ``row`` arrives complete (schema defaults plus what every convention shares: ids, name, times,
        status, errors, ``user.id``/``session.id``, service, environment, project). ``attrs`` is this
        span's private copy of its attributes: pop every key turned into a column so that only unmapped
        keys remain; the pipeline stores what is left in ``spans.attributes``.
        """


def _load(spec: str) -> Normalizer:
    module, _, name = spec.partition(":")
    obj = getattr(importlib.import_module(module), name)
    return obj() if isinstance(obj, type) else obj


def _entry_point_normalizers() -> list[Normalizer]:
    try:
        from importlib.metadata import entry_points

        eps = entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # broken metadata must not stop the collector
        return []
    out = []
    for ep in eps:
        try:
            n = ep.load()
            out.append(n() if isinstance(n, type) else n)
        except Exception as e:
            log.warning("normalizer plugin %s could not be loaded (%s); skipped", ep.name, e)
    return out


# The built-ins' matches() read only the attribute keys, the scope name and whether the resource says
# telemetry.sdk.name = openlit; a registry of built-ins alone remembers its pick per those (a plugin may read
# anything, so a registry with one never caches). Bounded: cleared when full.
_BUILTIN_MODULES = frozenset(s.partition(":")[0] for s in (*BUILTIN_NORMALIZERS, FALLBACK_NORMALIZER))
PICK_CACHE_MAX = 4096


class NormalizerRegistry:
    """An ordered list of normalizers plus a fallback; immutable once built, so shareable by threads
    (its pick cache is a dict read and written under the GIL; a lost insert only costs a recomputation)."""

    def __init__(self, normalizers: Iterable[Normalizer], fallback: Normalizer | None = None) -> None:
        self.normalizers: tuple[Normalizer, ...] = tuple(normalizers)
        self.fallback: Normalizer = fallback if fallback is not None else _load(FALLBACK_NORMALIZER)
        builtin = all(type(n).__module__ in _BUILTIN_MODULES for n in (*self.normalizers, self.fallback))
        self._pick_cache: dict[tuple[Any, ...], Normalizer] | None = {} if builtin else None

    @classmethod
    def default(cls, *, plugins: bool = True) -> NormalizerRegistry:
        """Entry-point plugins (if any), then the built-ins in their documented order, then the fallback."""
        found: list[Normalizer] = _entry_point_normalizers() if plugins else []
        found.extend(_load(s) for s in BUILTIN_NORMALIZERS)
        return cls(found)

    def with_normalizer(self, normalizer: Normalizer, index: int = 0) -> NormalizerRegistry:
        """A new registry with ``normalizer`` inserted at ``index`` (default: tried first)."""
        items = list(self.normalizers)
        items.insert(index, normalizer)
        return NormalizerRegistry(items, self.fallback)

    def pick(self, span: Span) -> Normalizer:
        cache = self._pick_cache
        if cache is None:
            return self._pick(span)
        key = (span.scope_name, span.resource.get("telemetry.sdk.name") == "openlit", *span.attributes)
        found = cache.get(key)
        if found is None:
            found = self._pick(span)
            if len(cache) >= PICK_CACHE_MAX:
                cache.clear()
            cache[key] = found
        return found

    def _pick(self, span: Span) -> Normalizer:
        for n in self.normalizers:
            if n.matches(span):
                return n
        return self.fallback

    @property
    def conventions(self) -> Sequence[str]:
        return [n.convention for n in (*self.normalizers, self.fallback)]
