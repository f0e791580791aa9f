"""Value helpers every normalizer shares.

The ``take_*`` helpers read one attribute and **pop it only when its value was usable**: whatever a mapping
did not turn into a column stays in the attribute dict and ends up in ``spans.attributes``, so a bad value
is kept for a human to see instead of vanishing. None of them raise on odd input.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from typing import Any

from monitor.store.schema import EPOCH

try:  # with the server extra (the collector's hot path); the stdlib json serves when orjson is absent
    import orjson
except ImportError:  # pragma: no cover - exercised only without the server extra
    orjson = None  # type: ignore[assignment]

MAX_UINT32 = (1 << 32) - 1
MAX_UINT64_SAFE = (1 << 63) - 1
# The spans table partitions by toDate() and expires by toDateTime(): both overflow after 2106-02-07, so
# a later timestamp would land in a wrapped partition or expire at once (and beyond 2262 DateTime64(9)
# cannot hold it at all, failing the whole batch on every retry). Clock bugs get clamped to 2105-01-01.
MAX_NS = 4_260_211_200 * 1_000_000_000

_MICRO = _dt.timedelta(microseconds=1)

# Old or non-spec provider values → the current OTel GenAI well-known names (reference §1.3, §1.4, §5).
PROVIDER_ALIASES = {
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "azure_openai": "azure.ai.openai",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "ibm.watson.ai": "ibm.watsonx.ai",
    "xai": "x_ai",
    "mistralai": "mistral_ai",
    "bedrock": "aws.bedrock",
}


def take_str(attrs: dict[str, Any], key: str) -> str:
    """A non-empty string attribute (ints are accepted and rendered), popped; "" otherwise."""
    v = attrs.get(key)
    if type(v) is str:
        if v:
            del attrs[key]
        return v
    if type(v) is int:
        del attrs[key]
        return str(v)
    return ""


def take_int(attrs: dict[str, Any], key: str, hi: int = MAX_UINT64_SAFE) -> int | None:
    """A non-negative integer attribute (numeric strings and integral floats accepted), popped."""
    n = as_int(attrs.get(key), hi)
    if n is not None:
        del attrs[key]
    return n


def as_int(v: Any, hi: int = MAX_UINT64_SAFE) -> int | None:
    if type(v) is int:
        n = v
    elif type(v) is float and v.is_integer():
        n = int(v)
    elif type(v) is str:
        try:
            n = int(v.strip())
        except ValueError:
            return None
    else:
        return None
    return n if 0 <= n <= hi else None


def take_float(attrs: dict[str, Any], key: str) -> float | None:
    """A finite number attribute (numeric strings accepted), popped."""
    x = as_float(attrs.get(key))
    if x is not None:
        del attrs[key]
    return x


def as_float(v: Any) -> float | None:
    if type(v) is float or type(v) is int:
        x = float(v)
    elif type(v) is str:
        try:
            x = float(v.strip())
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def take_bool(attrs: dict[str, Any], key: str) -> bool | None:
    v = attrs.get(key)
    if type(v) is bool:
        del attrs[key]
        return v
    if type(v) is str and v.lower() in ("true", "false"):
        del attrs[key]
        return v.lower() == "true"
    return None


def take_str_list(attrs: dict[str, Any], key: str) -> list[str] | None:
    """A string array attribute; a JSON-array string or a single string is accepted as well."""
    v = attrs.get(key)
    out = as_str_list(v)
    if out is not None:
        del attrs[key]
    return out


def as_str_list(v: Any) -> list[str] | None:
    if isinstance(v, list):
        return [x if type(x) is str else stringify(x) for x in v if x is not None]
    if type(v) is str and v:
        if v[0] == "[":
            try:
                parsed = loads(v)
            except ValueError:
                return [v]
            if isinstance(parsed, list):
                return [x if type(x) is str else stringify(x) for x in parsed if x is not None]
        return [v]
    return None


def normalize_provider(value: str) -> str:
    p = value.strip().lower()
    return PROVIDER_ALIASES.get(p, p)


def ns_to_datetime(ns: int) -> _dt.datetime:
    """UTC datetime (microsecond precision) for a unix-nanosecond timestamp, clamped to what the store holds."""
    if ns <= 0:
        return EPOCH
    if ns > MAX_NS:
        ns = MAX_NS
    return EPOCH + _MICRO * (ns // 1000)


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback: bytes (AnyValue bytesValue) become base64 text, anything else its str()."""
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode("ascii")
    return str(o)


def to_json(v: Any) -> str:
    """Compact JSON text of ``v`` (UTF-8 kept, bytes as base64), the same as ``json.dumps`` would write.

    orjson first (~7x faster on message lists); what it refuses (non-string keys, ints beyond 64 bits, lone
    surrogates, nesting deeper than 254) goes through ``json.dumps``. NaN/±inf become ``null`` on the orjson
    path, which keeps the column valid JSON for the dashboard (``json.dumps`` would write bare ``NaN``).
    """
    if orjson is not None:
        try:
            return orjson.dumps(v, default=json_default).decode()
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=json_default)


def loads(s: str) -> Any:
    """``json.loads``, through orjson when it accepts the text (it refuses NaN literals, ints beyond 64 bits
    and lone surrogate escapes, which the stdlib parser still reads). Raises ``ValueError`` like json."""
    if orjson is not None:
        try:
            return orjson.loads(s)
        except ValueError:  # orjson.JSONDecodeError
            pass
    return json.loads(s)


def stringify(v: Any) -> str:
    """An attribute value as the string stored in a Map(String, String) column."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is float:
        return repr(v)
    if v is None:
        return ""
    if t is bytes:
        return base64.b64encode(v).decode("ascii")
    return to_json(v)


def stringify_map(d: dict[str, Any]) -> dict[str, str]:
    return {k: (v if type(v) is str else stringify(v)) for k, v in d.items()}


def maybe_json(v: Any) -> Any:
    """Parse a JSON-looking string; anything else is returned unchanged."""
    if type(v) is str and v[:1] in ("[", "{", '"'):
        try:
            return loads(v)
        except ValueError:
            return v
    return v


def display_text(v: Any) -> str:
    """Readable text of a captured value: a JSON string literal unquoted, other JSON kept as sent,
    structured values (AnyValue arrays/kvlists) as compact JSON."""
    if type(v) is str:
        if v[:1] == '"':
            try:
                parsed = loads(v)
            except ValueError:
                return v
            return parsed if type(parsed) is str else v
        return v
    if v is None:
        return ""
    return stringify(v)


def has_key_prefix(attrs: dict[str, Any], prefix: str) -> bool:
    """Whether any key of ``attrs`` starts with ``prefix``; a single substring search over the joined keys
    (~4x faster than ``startswith`` per key on a typical span), confirmed key by key only when it hits, so a
    key that merely contains a newline cannot fake a match."""
    if ("\n" + prefix) not in "\n" + "\n".join(attrs):
        return False
    return any(k.startswith(prefix) for k in attrs)


def take_first_str(attrs: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The first usable string among ``keys`` (only that one is popped); "" when none is."""
    for key in keys:
        v = take_str(attrs, key)
        if v:
            return v
    return ""


def take_first_int(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        n = take_int(attrs, key)
        if n is not None:
            return n
    return None


def take_json_obj(attrs: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A JSON-object attribute (a JSON string or a kvlist), popped when it parsed to an object."""
    v = attrs.get(key)
    parsed = maybe_json(v) if type(v) is str else v
    if isinstance(parsed, dict):
        del attrs[key]
        return parsed
    return None


def take_prefixed(attrs: dict[str, Any], prefix: str) -> Any:
    """Pop every ``prefix…`` key and rebuild the nested value the flattening came from.

    OpenLLMetry (``gen_ai.prompt.0.role``) and OpenInference (``llm.input_messages.0.message.role``) flatten
    lists and objects into dotted keys because OTel attributes cannot nest; numeric segments become list
    positions again (sorted, so gaps are tolerated). ``None`` when no key has the prefix. O(attributes).
    """
    found = [k for k in attrs if k.startswith(prefix)]
    if not found:
        return None
    root: dict[str, Any] = {}
    n = len(prefix)
    for k in found:
        parts = k[n:].split(".")
        node = root
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        leaf = parts[-1]
        if not isinstance(node.get(leaf), dict):  # a longer key already made it a branch: keep the branch
            node[leaf] = attrs[k]
        del attrs[k]
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


def iso_to_ns(value: Any) -> int | None:
    """Unix nanoseconds of an ISO-8601 timestamp (``Z`` or an offset; naive means UTC); None if unparsable."""
    if type(value) is not str or not value:
        return None
    s = value.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def first_event_ttft_ms(span: Any, names: frozenset[str]) -> float | None:
    """Milliseconds from span start to the first event named in ``names`` (streaming chunk markers)."""
    start = span.start_time_unix_nano
    best: int | None = None
    for ev in span.events:
        if ev.name in names and ev.time_unix_nano >= start and (best is None or ev.time_unix_nano < best):
            best = ev.time_unix_nano
    if best is None or start <= 0:
        return None
    return (best - start) / 1e6
