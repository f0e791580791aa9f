"""Registry of instrumentors, loaded lazily by name.

Why a registry of import strings rather than imports: ``monitor.init()`` must not import ``openai``
(or ``anthropic``, ``langchain``…) unless the app has it, and must not pay for libraries it will not
patch. Built-ins are listed in :data:`BUILTIN`; third parties plug in through the entry-point group
``llm_monitor.instrumentors`` (value ``"package.module:InstrumentorClass"``, the class names its
``library``). A missing library is silent under ``instrument="auto"`` and an
:class:`InstrumentationError` when the instrumentor is asked for by name.

Adding an integration (Anthropic, LangChain, …) is one module with an :class:`Instrumentor` subclass
and one line in :data:`BUILTIN`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor._guard import guard

if TYPE_CHECKING:
    from monitor.instrumentation.base import Instrumentor

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "InstrumentationError", "Spec", "load", "registry", "select"]

logger = logging.getLogger("monitor")

ENTRY_POINT_GROUP = "llm_monitor.instrumentors"


class InstrumentationError(ValueError):
    """``instrument=[...]`` named an unknown instrumentor or one whose library is not installed."""


@dataclass(frozen=True)
class Spec:
    """Where an instrumentor lives (``module:Class``) and which importable library it patches."""

    name: str
    target: str
    library: str | None = None  # None: read ``library`` from the class once loaded (entry points)


BUILTIN: dict[str, Spec] = {
    "openai": Spec("openai", "monitor.instrumentation.openai:OpenAIInstrumentor", "openai"),
    "anthropic": Spec("anthropic", "monitor.instrumentation.anthropic:AnthropicInstrumentor", "anthropic"),
    "langchain": Spec(
        "langchain", "monitor.instrumentation.langchain:LangChainInstrumentor", "langchain_core"
    ),
}


def _entry_points() -> dict[str, Spec]:
    found: dict[str, Spec] = {}
    with guard("instrumentation.entry_points"):
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, Spec(ep.name, ep.value))
    return found


def registry() -> dict[str, Spec]:
    """All known instrumentors: built-ins first, then entry points (a built-in name cannot be taken)."""
    return {**_entry_points(), **BUILTIN}


def library_installed(library: str) -> bool:
    """Whether ``library`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def load(spec: Spec) -> type[Instrumentor]:
    """Import the instrumentor class (its module must not import the library at import time)."""
    module_name, _, attr = spec.target.partition(":")
    cls: type[Instrumentor] = getattr(importlib.import_module(module_name), attr)
    return cls


def select(instrument: str | bool | Iterable[str] | None) -> list[type[Instrumentor]]:
    """Resolve ``init(instrument=...)`` to instrumentor classes; raises only for names asked for."""
    if instrument is None or instrument is False:
        return []
    specs = registry()
    if instrument is True or instrument == "auto":
        chosen: list[type[Instrumentor]] = []
        for spec in specs.values():
            if spec.library is not None and not library_installed(spec.library):
                continue
            with guard(f"instrumentation.load.{spec.name}"):
                cls = load(spec)
                if library_installed(cls.library):
                    chosen.append(cls)
        return chosen
    names = [instrument] if isinstance(instrument, str) else list(instrument)
    chosen = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"instrument: expected instrumentor names (str), got {name!r}")
        wanted = specs.get(name)
        if wanted is None:
            known = ", ".join(sorted(specs)) or "none"
            raise InstrumentationError(f"unknown instrumentor {name!r} (known: {known})")
        if wanted.library is not None and not library_installed(wanted.library):
            raise InstrumentationError(
                f"instrumentor {name!r} needs the {wanted.library!r} package, which is not installed "
                f"(pip install {wanted.library})"
            )
        cls = load(wanted)
        if not library_installed(cls.library):
            raise InstrumentationError(
                f"instrumentor {name!r} needs the {cls.library!r} package, which is not installed"
            )
        if cls not in chosen:
            chosen.append(cls)
    return chosen
