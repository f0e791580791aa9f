"""The optional native OTel GenAI mapping (``collectors/_normalize_native.c``) and its on/off switch.

The extension is a C mirror of :func:`collectors.normalize.otel_genai.apply_genai` (up to the finish reason:
the rare content-event and tool paths stay in Python) and of the message parsing in ``messages.py``; it fills
rows byte-identical to the Python reference (``tests/unit/test_normalize_fast.py`` checks that), ≈ 6x faster.
Message attributes of the usual shapes skip Python objects altogether: its "direct lane" reads the JSON
text and writes the stored JSON and text itself (``content_lane()`` counts and switches it), and
``content_batch(spans)`` runs that parse for a whole request up front with the GIL released (the pipeline
passes its result to ``normalize_span``), so other request threads run meanwhile.
It is used when it was built (``setup.py``, optional: without a C compiler the install still succeeds) unless
``LLM_MONITOR_NATIVE_NORMALIZE=0``; :func:`use_native` switches it per process (tests run both paths). The
same extension prices the usual rows for :meth:`collectors.pricing.Pricer.apply` (``price_usual``), under the
same environment switch.

Configuration happens once at import: the extension gets the Python helpers it calls back for rare or
bulky work (JSON parsing and writing, ``display_text``, ``as_str_list``), the operation → kind and provider
alias tables, and the attribute keys from :mod:`monitor.semconv`, so nothing is spelled twice.
"""

from __future__ import annotations

import os
from typing import Any

from collectors.normalize import common
from collectors.normalize.base import NormalizerRegistry
from monitor import semconv as sc
from monitor.store.schema import EPOCH, SPAN_DEFAULTS

ENV_SWITCH = "LLM_MONITOR_NATIVE_NORMALIZE"

# The order the extension's key table expects (its enum in _normalize_native.c).
TOTAL_TOKEN_KEYS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
KEYS = (
    sc.GEN_AI_OPERATION_NAME,
    sc.GEN_AI_PROVIDER_NAME,
    sc.GEN_AI_SYSTEM,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.GEN_AI_RESPONSE_ID,
    sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    sc.GEN_AI_REQUEST_TEMPERATURE,
    sc.GEN_AI_REQUEST_TOP_P,
    sc.GEN_AI_REQUEST_MAX_TOKENS,
    sc.GEN_AI_REQUEST_STREAM,
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    sc.GEN_AI_USAGE_PROMPT_TOKENS,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_USAGE_COMPLETION_TOKENS,
    *TOTAL_TOKEN_KEYS,
    sc.GEN_AI_CONVERSATION_ID,
    sc.GEN_AI_RESPONSE_FINISH_REASONS,
    sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_PROMPT,
    sc.GEN_AI_OUTPUT_MESSAGES,
    sc.GEN_AI_COMPLETION,
)


def _disabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def load(operation_kinds: dict[str, str]) -> Any:
    """The configured extension, or None when it is not built (or refuses the configuration)."""
    try:
        from collectors import _normalize_native  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        _normalize_native.configure(
            common.loads,
            common.to_json,
            common.display_text,
            common.as_str_list,
            operation_kinds,
            common.PROVIDER_ALIASES,
            KEYS,
            *((common.orjson.loads, common.orjson.dumps, common.json_default) if common.orjson else ()),
        )
    except TypeError:  # an extension built from another version of the key table
        return None
    return _normalize_native


#: the extension when built, whether or not it is switched on (tests compare it with the reference)
module: Any = None
#: what apply_genai uses: ``module`` when switched on, else None (the Python reference)
native: Any = None


def init(operation_kinds: dict[str, str]) -> None:
    """Called once by otel_genai at import, with its operation → kind table."""
    global module, native
    module = load(operation_kinds)
    native = None if _disabled_by_env() else module


def init_rows(
    status: dict[int, str],
    user_keys: tuple[str, ...],
    session_keys: tuple[str, ...],
    min_plausible_ns: int,
    genai_cls: type,
    content_events: Any,
    tool_io: Any,
) -> None:
    """Called once by pipeline at import: what the native ``normalize_span`` needs besides ``init``'s."""
    global module, native
    if module is None:
        return
    try:
        module.configure_rows(
            SPAN_DEFAULTS,
            status,
            EPOCH,
            min_plausible_ns,
            common.MAX_NS,
            user_keys,
            session_keys,
            sc.ERROR_TYPE,
            common.stringify,
            genai_cls,
            content_events,
            tool_io,
            NormalizerRegistry,
        )
    except TypeError:
        module = native = None


def use_native(enabled: bool) -> bool:
    """Switch the native path on (when built) or off for this process; returns whether it is now on.

    Not for request time: flipping it while other threads normalize is safe (one global read per span)
    but mixes paths within a request."""
    global native
    native = module if enabled else None
    return native is not None
