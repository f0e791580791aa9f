"""Analyzers: cheap local scorers run on every span by the scheduler, plus drift and acceptance.

Registry of import strings (``module:Class``) so ``llm-monitor up`` loads only the analyzers it runs and a
missing optional library (a model package) disables one analyzer with one clear line instead of
breaking the rest. Adding an analyzer is one module with an :class:`~monitor.analyzers.base.Analyzer`
subclass and one line in :data:`BUILTIN`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.analyzers.base import Analyzer

__all__ = ["BUILTIN", "load"]

BUILTIN: dict[str, str] = {
    "toxicity": "monitor.analyzers.toxicity:ToxicityAnalyzer",
    "pii": "monitor.analyzers.pii:PIIAnalyzer",
    "injection": "monitor.analyzers.injection:InjectionAnalyzer",
    "refusal": "monitor.analyzers.refusal:RefusalAnalyzer",
    "format": "monitor.analyzers.format:FormatAnalyzer",
    "sentiment": "monitor.analyzers.sentiment:SentimentAnalyzer",
}


def load(name: str) -> type[Analyzer]:
    """The analyzer class registered as ``name`` (``KeyError`` for an unknown name)."""
    module_name, _, attr = BUILTIN[name].partition(":")
    cls: type[Analyzer] = getattr(importlib.import_module(module_name), attr)
    return cls
