"""OpenInference (Arize Phoenix) spans (reference §3) → ``spans`` columns.

OpenInference has its own vocabulary rather than a dialect of OTel GenAI: ``openinference.span.kind`` on
every span (the OTel span kind is INTERNAL even for LLM calls, so it is never consulted), flattened
``llm.input_messages.{i}.message.*`` lists, ``llm.token_count.*``, a provider-computed ``llm.cost.total``
and the request parameters as one JSON string. ``input.value``/``output.value`` hold the raw request and
response JSON on LLM spans and the function input/output on CHAIN/TOOL/AGENT spans: they are the text of
a span only when no message list was given.
"""

from __future__ import annotations

from typing import Any

from collectors.normalize import messages as msgs
from collectors.normalize.base import Normalizer
from collectors.normalize.common import (
    MAX_UINT32,
    as_float,
    as_int,
    display_text,
    first_event_ttft_ms,
    maybe_json,
    normalize_provider,
    take_first_str,
    take_float,
    take_int,
    take_json_obj,
    take_prefixed,
    take_str,
    take_str_list,
)
from collectors.otlp import Span

SPAN_KIND = "openinference.span.kind"
KINDS = {
    "LLM": "llm",
    "CHAIN": "chain",
    "AGENT": "agent",
    "TOOL": "tool",
    "RETRIEVER": "retriever",
    "EMBEDDING": "embedding",
    "RERANKER": "reranker",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator",
}
FIRST_TOKEN_EVENTS = frozenset(("First Token Stream Event",))
INPUT_VALUE, INPUT_MIME = "input.value", "input.mime_type"
OUTPUT_VALUE, OUTPUT_MIME = "output.value", "output.mime_type"
PROVIDER_KEYS = ("llm.provider", "llm.system")
RESPONSE_MODEL_KEYS = (
    "llm.response.model_name",
    "llm.model_name",
    "embedding.model_name",
    "reranker.model_name",
)


class OpenInferenceNormalizer(Normalizer):
    convention = "openinference"

    def matches(self, span: Span) -> bool:
        return SPAN_KIND in span.attributes

    def normalize(self, span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
        apply_openinference(span, attrs, row)


def apply_openinference(span: Span, attrs: dict[str, Any], row: dict[str, Any]) -> None:
    """The OpenInference mapping; shared with Langfuse spans that also carry OpenInference keys."""
    raw_kind = attrs.get(SPAN_KIND)
    if type(raw_kind) is str:
        row["kind"] = KINDS.get(raw_kind.upper(), "other")  # PROMPT, UNKNOWN, DECISION…
        del attrs[SPAN_KIND]

    provider = take_first_str(attrs, PROVIDER_KEYS)
    if provider:
        row["provider"] = normalize_provider(provider)
    params = take_json_obj(attrs, "llm.invocation_parameters") or take_json_obj(
        attrs, "embedding.invocation_parameters"
    )
    requested = take_str(attrs, "llm.request.model_name")
    if not requested and params and type(params.get("model")) is str:
        requested = params["model"]
    served = take_first_str(attrs, RESPONSE_MODEL_KEYS)
    row["request_model"] = requested or served
    row["response_model"] = served
    row["model"] = served or requested
    if params:
        _parameters(params, row)

    row["input_tokens"] = take_int(attrs, "llm.token_count.prompt") or 0
    row["output_tokens"] = take_int(attrs, "llm.token_count.completion") or 0
    total = take_int(attrs, "llm.token_count.total")
    if total is not None:
        row["total_tokens"] = total
    cost = take_float(attrs, "llm.cost.total")
    if cost is not None and cost >= 0:
        row["cost_usd"] = cost  # provider-reported cost wins over the price table
    row["finish_reason"] = take_str(attrs, "llm.finish_reason")
    tags = take_str_list(attrs, "tag.tags")
    if tags:
        row["tags"] = tags
    row["prompt_name"] = take_str(attrs, "prompt.id")
    row["prompt_version"] = take_str(attrs, "llm.prompt_template.version")

    if span.events:
        ttft = first_event_ttft_ms(span, FIRST_TOKEN_EVENTS)
        if ttft is not None:
            row["ttft_ms"] = ttft
            row["stream"] = True

    _messages(attrs, row)
    kind = row["kind"]
    if kind == "retriever":
        _documents(attrs, row, "retrieval.documents.")
    elif kind == "reranker":
        if not row["input_text"]:
            row["input_text"] = take_str(attrs, "reranker.query")
        _documents(attrs, row, "reranker.output_documents.")
    elif kind == "embedding" and not row["input_text"]:
        _embedding_texts(attrs, row)
    _raw_io(attrs, row)


def _parameters(params: dict[str, Any], row: dict[str, Any]) -> None:
    row["temperature"] = as_float(params.get("temperature"))
    row["top_p"] = as_float(params.get("top_p"))
    mt = params.get("max_tokens", params.get("max_completion_tokens"))
    row["max_tokens"] = as_int(mt, MAX_UINT32)
    if params.get("stream") is True:
        row["stream"] = True


def _oi_message(m: Any) -> dict[str, Any] | None:
    """``{"message": {role, content, contents, tool_calls, tool_call_id, name}}`` → OpenAI-style message."""
    if isinstance(m, dict) and isinstance(m.get("message"), dict):
        m = m["message"]
    if not isinstance(m, dict):
        return None
    out: dict[str, Any] = {"role": m.get("role") or "", "content": m.get("content")}
    contents = m.get("contents")
    if out["content"] is None and isinstance(contents, list):
        parts = []
        for c in contents:
            mc = c.get("message_content") if isinstance(c, dict) else None
            if not isinstance(mc, dict):
                continue
            if mc.get("type") == "image" or "image" in mc:
                image = mc.get("image")
                url = image.get("image", {}).get("url") if isinstance(image, dict) else None
                parts.append({"type": "uri", "modality": "image", "uri": url} if url else {"type": "image"})
            elif mc.get("text") is not None:
                parts.append({"type": "text", "content": mc["text"]})
        out["content"] = parts
    calls = []
    for c in m.get("tool_calls") or ():
        tc = c.get("tool_call") if isinstance(c, dict) else None
        if isinstance(tc, dict):
            fn_raw = tc.get("function")
            fn: dict[str, Any] = fn_raw if isinstance(fn_raw, dict) else {}
            call: dict[str, Any] = {"type": "tool_call", "name": fn.get("name", "")}
            if tc.get("id") is not None:
                call["id"] = tc["id"]
            if "arguments" in fn:
                call["arguments"] = maybe_json(fn["arguments"])
            calls.append(call)
    if calls:
        out["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if m.get(key) is not None:
            out[key] = m[key]
    return out


def _message_list(attrs: dict[str, Any], prefix: str, default_role: str) -> list[msgs.Message]:
    raw = take_prefixed(attrs, prefix)
    if not isinstance(raw, list):
        return []
    found = [x for x in (_oi_message(m) for m in raw) if x is not None]
    return (msgs.parse_messages(found, default_role) or []) if found else []


def _texts(attrs: dict[str, Any], prefix: str, inner: str, role: str) -> list[msgs.Message]:
    """Completions API: ``llm.prompts.{i}.prompt.text`` / ``llm.choices.{i}.completion.text``."""
    raw = take_prefixed(attrs, prefix)
    out = []
    for x in raw if isinstance(raw, list) else ():
        v = x.get(inner, {}).get("text") if isinstance(x, dict) and isinstance(x.get(inner), dict) else x
        if type(v) is str:
            out.append({"role": role, "content": v, "parts": [{"type": "text", "content": v}]})
    return out


def _messages(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    inputs = _message_list(attrs, "llm.input_messages.", "user") or _texts(
        attrs, "llm.prompts.", "prompt", "user"
    )
    if inputs:
        row["input_messages"] = msgs.messages_json(inputs)
        row["input_text"] = msgs.messages_text(inputs)
    outputs = _message_list(attrs, "llm.output_messages.", "assistant") or _texts(
        attrs, "llm.choices.", "completion", "assistant"
    )
    if outputs:
        row["output_messages"] = msgs.messages_json(outputs)
        row["output_text"] = msgs.messages_text(outputs)


def _documents(attrs: dict[str, Any], row: dict[str, Any], prefix: str) -> None:
    """Retrieved (or reranked) documents: their contents are the span's output text."""
    raw = take_prefixed(attrs, prefix)
    docs = []
    for d in raw if isinstance(raw, list) else ():
        doc = d.get("document") if isinstance(d, dict) else None
        if isinstance(doc, dict):
            docs.append(doc)
    if docs:
        row["output_messages"] = msgs.messages_json(docs)
        row["output_text"] = "\n\n".join(display_text(d.get("content")) for d in docs if d.get("content"))


def _embedding_texts(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    """Embedded texts become the input text. The vectors are dropped on purpose: thousands of floats per
    span, useless in a string map, and the embedding service can recompute them."""
    raw = take_prefixed(attrs, "embedding.embeddings.")
    texts = []
    for e in raw if isinstance(raw, list) else ():
        emb = e.get("embedding") if isinstance(e, dict) else None
        if isinstance(emb, dict) and type(emb.get("text")) is str:
            texts.append(emb["text"])
    if texts:
        row["input_text"] = "\n".join(texts)


def _raw_io(attrs: dict[str, Any], row: dict[str, Any]) -> None:
    """``input.value``/``output.value``: the span's text when no structured form gave one.

    On LLM spans the output is the raw provider response; its ``id`` is the only place the response id
    travels (reference §6).
    """
    out_value = attrs.get(OUTPUT_VALUE)
    if not row["response_id"] and row["kind"] == "llm" and type(out_value) is str and out_value[:1] == "{":
        parsed = maybe_json(out_value)
        if isinstance(parsed, dict) and type(parsed.get("id")) is str:
            row["response_id"] = parsed["id"]
    for value_key, mime_key, col in (
        (INPUT_VALUE, INPUT_MIME, "input_text"),
        (OUTPUT_VALUE, OUTPUT_MIME, "output_text"),
    ):
        if row[col]:
            continue
        v = attrs.pop(value_key, None)
        if v is None:
            continue
        row[col] = display_text(v)
        attrs.pop(mime_key, None)
