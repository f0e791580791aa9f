"""The ``Analyzer`` seam: a pure function from a batch of spans to score rows.

The scheduler (``monitor.analyzers.scheduler``) owns all I/O: it reads spans from the store past the
analyzer's watermark, calls :meth:`Analyzer.score` on batches, and writes the results to ``scores``
idempotently. Analyzers never touch the store, the network or the clock, which is what makes them
testable on hand-written rows and benchmarkable on their own.

Contract for subclasses:

* ``name`` is the ``scores.analyzer`` value (``toxicity``, ``pii``, ``injection``, ``refusal``,
  ``format``, ``sentiment``…) and the key of the analyzer's options under ``analyzers:`` in
  ``llm-monitor.yaml``. ``version`` goes to ``scores.analyzer_version``; bump it when the same span would
  score differently, so a backfill can tell old rows from new. A row may name its own version (the model
  that produced it: a cascade mixes two).
* ``kinds``: the span kinds the analyzer wants (default: LLM calls). ``fields``: the span columns it reads
  besides the identity columns every batch carries (:data:`IDENTITY`).
* ``__init__(options)`` validates its options (a mapping from the config, possibly empty) and raises
  :class:`AnalyzerConfigError` with one clear line for a bad one. Heavy models load lazily on the first
  :meth:`score` (``up`` must start fast) and once per process.
* :meth:`score` is called from the scheduler's thread with a list of span dicts; it may take time (models)
  but must not block on I/O. It returns :class:`Score` rows referring to spans by their index in the batch.
  It raises only for bugs; an individual odd span (empty text, huge text, bad JSON) is scored or skipped,
  never fatal to the batch.

Metric naming, shared by every analyzer so dashboards and alert rules can rely on it:

* ``input`` / ``output``: the headline score of the span's user input / model output, in ``[0, 1]``,
  higher = more of the thing the analyzer looks for (more toxic, more PII, more likely an injection, more
  of a refusal, more invalid, more negative). ``label`` names what was found (comma-separated, sorted;
  empty when nothing was).
* ``input.<detail>`` / ``output.<detail>``: optional per-category scores (``output.insult``, ``input.email``…).
* A span whose side has no text gets no row for that side (absence is not a zero).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "IDENTITY",
    "Analyzer",
    "AnalyzerConfigError",
    "Score",
    "input_text",
    "output_text",
    "user_text",
]

# Columns every batch row carries, whatever the analyzer asks for.
IDENTITY: tuple[str, ...] = ("project", "trace_id", "span_id", "start_time", "kind", "ingested_at")


class AnalyzerConfigError(ValueError):
    """A bad option under ``analyzers:`` in the config; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class Score:
    """One ``scores`` row for the span at ``row`` in the batch passed to :meth:`Analyzer.score`."""

    row: int
    metric: str
    value: float
    label: str = ""
    version: str | None = None  # the model that produced it, when not the analyzer's own ``version``


class Analyzer(ABC):
    """Base class of every analyzer; see the module docstring for the contract."""

    name: ClassVar[str]
    version: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ("llm",)
    fields: ClassVar[tuple[str, ...]] = ("input_text", "output_text")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    @abstractmethod
    def score(self, spans: Sequence[Mapping[str, Any]]) -> Iterable[Score]:
        """Scores for ``spans`` (dicts with :data:`IDENTITY` plus :attr:`fields`); pure, may be slow."""

    def option(self, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        """``options[key]`` checked against ``kind``, or ``default``; a wrong type is one clear error."""
        value = self.options.get(key, default)
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise AnalyzerConfigError(f"analyzers: {self.name}: {key} must be a number, got {value!r}")
        if not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise AnalyzerConfigError(f"analyzers: {self.name}: {key} must be {want}, got {value!r}")
        return value


def input_text(span: Mapping[str, Any]) -> str:
    """The span's user-side text (``spans.input_text``), '' when absent."""
    v = span.get("input_text")
    return v if isinstance(v, str) else ""


def output_text(span: Mapping[str, Any]) -> str:
    """The span's model-side text (``spans.output_text``), '' when absent."""
    v = span.get("output_text")
    return v if isinstance(v, str) else ""


def user_text(span: Mapping[str, Any]) -> str:
    """What the end user wrote last: the text parts of the last ``user`` message in ``input_messages``.

    ``input_text`` holds the whole prompt (system instructions, history, retrieved context), which would
    blame the user for the app's own prompt; injection and sentiment read this instead. Falls back to
    ``input_text`` when the span has no structured messages (chains, tools, conventions without roles).
    Needs ``input_messages`` in the analyzer's :attr:`Analyzer.fields`.
    """
    raw = span.get("input_messages")
    if isinstance(raw, str) and raw:
        try:
            messages = json.loads(raw)
        except ValueError:
            messages = None
        if isinstance(messages, list):
            for msg in reversed(messages):
                if isinstance(msg, dict) and msg.get("role") == "user":
                    parts = msg.get("parts")
                    texts = [
                        p["content"]
                        for p in (parts if isinstance(parts, list) else ())
                        if isinstance(p, dict)
                        and p.get("type") == "text"
                        and isinstance(p.get("content"), str)
                    ]
                    return "\n".join(texts)
    return input_text(span)
