"""Normalization: every span convention mapped onto the one ``spans`` table (DESIGN §3).

Entry point for the collector: :func:`normalize_spans`. The seam for new conventions: :class:`Normalizer`
(one module per convention in this package, listed in :data:`base.BUILTIN_NORMALIZERS`).
"""

from __future__ import annotations

from collectors.normalize.base import BUILTIN_NORMALIZERS, Normalizer, NormalizerRegistry
from collectors.normalize.pipeline import default_registry, normalize_spans, propagate_trace_identity

__all__ = [
    "BUILTIN_NORMALIZERS",
    "Normalizer",
    "NormalizerRegistry",
    "default_registry",
    "normalize_spans",
    "propagate_trace_identity",
]
