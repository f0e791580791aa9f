"""Pure extractors: LangChain callback payloads → span names and attributes.

Kept apart from the callback handler so every mapping reads in one place and is testable without
spans. Nothing here imports ``langchain_core`` (objects are read by duck typing: ``.type``,
``.content``, ``.tool_calls``…), touches spans or does I/O; unexpected shapes give missing
attributes, not exceptions. Message content follows the GenAI JSON format of :mod:`._genai`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor import semconv as sc
from monitor._serialize import DEFAULT_LIMIT, dumps_capped, to_jsonable
from monitor.instrumentation._genai import (
    finish_reason_enum,
    get,
    messages_json,
    text_part,
    tool_call_part,
    tool_response_part,
)

__all__ = [
    "capped",
    "chat_input_attributes",
    "convert_messages",
    "documents_output",
    "is_agent",
    "is_agent_step",
    "llm_request_attributes",
    "llm_response_attributes",
    "model_name",
    "prompt_input_attributes",
    "provider_name",
    "run_name",
    "simplify",
    "tool_output",
]

# LangChain's ``ls_provider`` (or the integration package in the class path) → gen_ai.provider.name.
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
}
_SYSTEM_TYPES = ("system", "developer")
_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "function": "tool"}
_SIMPLIFY_DEPTH = 4
_SIMPLIFY_ITEMS = 100


def _num(value: Any, typ: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return typ(value)


# --- names -----------------------------------------------------------------------------------------


def run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The run's name as LangChain shows it: ``run_name``, else the serialized name or class."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if isinstance(serialized, Mapping):
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ident = serialized.get("id")
        if isinstance(ident, Sequence) and ident and isinstance(ident[-1], str):
            return ident[-1]
    return default


def _class_path(serialized: Mapping[str, Any] | None) -> list[str]:
    ident = serialized.get("id") if isinstance(serialized, Mapping) else None
    return [str(p) for p in ident] if isinstance(ident, Sequence) and not isinstance(ident, str) else []


def is_agent(
    name: str,
    serialized: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    parent_tags: frozenset[str],
) -> bool:
    """Whether a chain run is an agent (more signals arrive later: ``on_agent_action``/``finish``).

    ``AgentExecutor`` (by name or class); a run tagged ``agent`` whose parent is not (LangChain tags
    are inherited, so only the outermost tagged run is the agent). A LangGraph agent is recognised
    by its first step instead (:func:`is_agent_step`).
    """
    path = _class_path(serialized)
    if name.endswith("AgentExecutor") or (path and path[-1].endswith("AgentExecutor")):
        return True
    return bool(tags and "agent" in tags and "agent" not in parent_tags)


# What LangChain 1.x's ``langchain.agents.create_agent`` stamps on every run of its graph (run metadata is
# inherited), next to ``lc_agent_name`` when the agent was given a name.
CREATE_AGENT_INTEGRATION = "langchain_create_agent"


def is_agent_step(name: str, metadata: Mapping[str, Any] | None) -> bool:
    """Whether a chain run is the model node of a prebuilt agent graph: LangGraph's ReAct agent
    (``create_react_agent``, node ``agent``) or LangChain 1.x's ``create_agent`` (node ``model``, its
    runs marked ``ls_integration: langchain_create_agent``).

    That node runs once per turn of the loop, so it is a step, not the agent: the graph run it belongs
    to (its parent) is the agent, and the ``tools`` node beside it runs under that. Runs inside the node
    inherit its metadata, hence the name check; a hand-built graph with a node named ``model`` carries
    no integration mark and stays a chain. Nested agents work alike: each model node marks its own graph.
    """
    if not metadata:
        return False
    node = get(metadata, "langgraph_node")
    if name == "agent" and node == "agent":
        return True
    return name == "model" and node == "model" and get(metadata, "ls_integration") == CREATE_AGENT_INTEGRATION


def provider_name(serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> str | None:
    """``gen_ai.provider.name`` from ``ls_provider``, else the integration in the class path."""
    ls = get(metadata, "ls_provider")
    if isinstance(ls, str) and ls:
        return _PROVIDERS.get(ls.lower(), ls.lower())
    path = _class_path(serialized)
    # ["langchain", "chat_models", "openai", "ChatOpenAI"] / ["langchain_anthropic", ...]
    if len(path) >= 3 and path[0] == "langchain" and path[1] in ("chat_models", "llms"):
        return _PROVIDERS.get(path[2].lower(), path[2].lower())
    if path and path[0].startswith("langchain_") and path[0] != "langchain_core":
        key = path[0][len("langchain_") :]
        return _PROVIDERS.get(key, key)
    return None


def model_name(invocation_params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> str | None:
    for key in ("model", "model_name", "model_id", "deployment_name"):
        value = get(invocation_params, key)
        if isinstance(value, str) and value:
            return value
    value = get(metadata, "ls_model_name")
    return value if isinstance(value, str) and value else None


# --- content ---------------------------------------------------------------------------------------


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content (string, or a list of OpenAI-style or LangChain v1 content blocks)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, Sequence):
        return [text_part(str(content))]
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append(text_part(block))
            continue
        typ = get(block, "type")
        if typ == "text":
            parts.append(text_part(get(block, "text", "")))
        elif typ in ("reasoning", "thinking"):
            text = get(block, "reasoning") or get(block, "thinking") or ""
            parts.append({"type": "reasoning", "content": text_part(text)["content"]})
        elif typ == "image_url":
            url = get(get(block, "image_url"), "url") or get(block, "image_url")
            parts.append(_media_part("image", url if isinstance(url, str) else None, None))
        elif typ in ("image", "audio", "video", "file"):
            url = get(block, "url")
            mime = get(block, "mime_type")
            if url is None and (get(block, "base64") or get(block, "data")):
                parts.append({"type": "blob", "modality": typ, "mime_type": mime})
            elif get(block, "file_id") or get(block, "id"):
                parts.append(
                    {"type": "file", "modality": typ, "file_id": get(block, "file_id") or get(block, "id")}
                )
            else:
                parts.append(_media_part(typ, url if isinstance(url, str) else None, mime))
        elif typ in ("tool_use", "tool_call"):
            continue  # also listed in ``message.tool_calls``, which is where we read calls from
        else:
            parts.append({"type": str(typ or "unknown")})
    return parts


def _media_part(modality: str, url: str | None, mime: Any) -> dict[str, Any]:
    if url and url.startswith("data:"):  # inline base64: keep the type, not megabytes of payload
        return {"type": "blob", "modality": modality, "mime_type": url[5:].split(";", 1)[0] or mime}
    return {"type": "uri", "modality": modality, "uri": url}


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            b if isinstance(b, str) else str(get(b, "text", ""))
            for b in content
            if isinstance(b, str) or get(b, "type") == "text"
        )
    return "" if content is None else str(content)


def _tool_call_parts(message: Any) -> list[dict[str, Any]]:
    return [
        tool_call_part(get(c, "id"), get(c, "name"), get(c, "args", get(c, "arguments")))
        for c in get(message, "tool_calls") or []
    ]


def convert_messages(messages: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, input messages) from LangChain ``BaseMessage`` objects."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        typ = get(m, "type")
        content = get(m, "content")
        role = get(m, "role") if typ == "chat" else _ROLES.get(str(typ), str(typ))
        if typ in _SYSTEM_TYPES or role in _SYSTEM_TYPES:
            system.extend(_content_parts(content))
            continue
        if typ in ("tool", "function"):
            parts = [tool_response_part(get(m, "tool_call_id"), _plain_text(content))]
        else:
            parts = _content_parts(content) + _tool_call_parts(m)
        msg: dict[str, Any] = {"role": str(role), "parts": parts}
        name = get(m, "name")
        if isinstance(name, str) and name:
            msg["name"] = name
        out.append(msg)
    return system, out


# --- LLM request -------------------------------------------------------------------------------------


def _param(params: Mapping[str, Any] | None, *names: str) -> Any:
    for n in names:
        v = get(params, n)
        if v is not None:
            return v
    return None


def llm_request_attributes(
    operation: str,
    serialized: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    capture_content: bool,
) -> dict[str, Any]:
    """Start attributes of a chat-model/LLM span (messages are added by the caller)."""
    params = invocation_params if isinstance(invocation_params, Mapping) else {}
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.LLM_MONITOR_SPAN_KIND: "llm",
        sc.GEN_AI_PROVIDER_NAME: provider_name(serialized, metadata),
        sc.GEN_AI_REQUEST_MODEL: model_name(params, metadata),
        sc.GEN_AI_REQUEST_TEMPERATURE: _num(
            _param(params, "temperature") or get(metadata, "ls_temperature"), float
        ),
        sc.GEN_AI_REQUEST_TOP_P: _num(_param(params, "top_p"), float),
        sc.GEN_AI_REQUEST_MAX_TOKENS: _num(
            _param(params, "max_completion_tokens", "max_tokens", "max_output_tokens", "num_predict")
            or get(metadata, "ls_max_tokens"),
            int,
        ),
        sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: _num(_param(params, "frequency_penalty"), float),
        sc.GEN_AI_REQUEST_PRESENCE_PENALTY: _num(_param(params, "presence_penalty"), float),
        sc.GEN_AI_REQUEST_SEED: _num(_param(params, "seed"), int),
    }
    n = _num(_param(params, "n"), int)
    if n is not None and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = _param(params, "stop") or get(metadata, "ls_stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, Sequence) and stop:
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    if _param(params, "stream") is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    tools = _param(params, "tools", "functions")
    if capture_content and isinstance(tools, Sequence) and tools:
        attrs[sc.GEN_AI_TOOL_DEFINITIONS] = messages_json(to_jsonable(list(tools)))
    return {k: v for k, v in attrs.items() if v is not None}


def chat_input_attributes(messages: Sequence[Any]) -> dict[str, Any]:
    system, msgs = convert_messages(messages)
    attrs = {sc.GEN_AI_INPUT_MESSAGES: messages_json(msgs)}
    if system:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = messages_json(system)
    return attrs


def prompt_input_attributes(prompts: Sequence[Any]) -> dict[str, Any]:
    msgs = [{"role": "user", "parts": [text_part(p)]} for p in prompts]
    return {sc.GEN_AI_INPUT_MESSAGES: messages_json(msgs)}


# --- LLM response ------------------------------------------------------------------------------------


def _usage(result: Any, generations: list[Any]) -> dict[str, Any]:
    """Token counts of one call, counted once.

    LangChain's normalised ``usage_metadata`` (input includes cached tokens for every provider) from
    the first generation that has it — not summed: with ``n > 1`` langchain-openai copies the call's
    usage onto every choice. Else the provider's raw ``llm_output`` (``token_usage`` / ``usage``).
    """
    for g in generations:
        usage = get(get(g, "message"), "usage_metadata")
        if usage:
            details_in = get(usage, "input_token_details") or {}
            details_out = get(usage, "output_token_details") or {}
            return {
                sc.GEN_AI_USAGE_INPUT_TOKENS: _num(get(usage, "input_tokens"), int),
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: _num(get(usage, "output_tokens"), int),
                sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _num(get(details_in, "cache_read"), int) or None,
                sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: _num(get(details_in, "cache_creation"), int)
                or None,
                sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _num(get(details_out, "reasoning"), int) or None,
            }
    output = get(result, "llm_output")
    usage = get(output, "token_usage") or get(output, "usage")
    if not usage:
        return {}
    return {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _num(_param(usage, "prompt_tokens", "input_tokens"), int),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _num(_param(usage, "completion_tokens", "output_tokens"), int),
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _num(
            get(get(usage, "prompt_tokens_details"), "cached_tokens"), int
        )
        or None,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _num(
            get(get(usage, "completion_tokens_details"), "reasoning_tokens"), int
        )
        or None,
    }


def _finish_reason(generation: Any) -> str | None:
    for source in (get(generation, "generation_info"), get(get(generation, "message"), "response_metadata")):
        reason = _param(source, "finish_reason", "stop_reason", "done_reason")
        if isinstance(reason, str) and reason:
            return reason
    return None


def llm_response_attributes(result: Any, capture_content: bool) -> dict[str, Any]:
    """Response attributes from an ``LLMResult`` (one prompt per run, so ``generations[0]``)."""
    batches = get(result, "generations") or []
    generations = list(batches[0]) if batches and isinstance(batches[0], Sequence) else []
    output = get(result, "llm_output")
    first_meta = get(get(generations[0], "message"), "response_metadata") if generations else None
    attrs: dict[str, Any] = {
        sc.GEN_AI_RESPONSE_ID: _param(output, "id") or _param(first_meta, "id"),
        sc.GEN_AI_RESPONSE_MODEL: _param(output, "model_name", "model")
        or _param(first_meta, "model_name", "model"),
        **_usage(result, generations),
    }
    for key in (sc.GEN_AI_RESPONSE_ID, sc.GEN_AI_RESPONSE_MODEL):
        if not isinstance(attrs[key], str):
            attrs[key] = None
    reasons = [r for r in (_finish_reason(g) for g in generations) if r]
    if reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    if capture_content and generations:
        out = []
        for g in generations:
            message = get(g, "message")
            if message is not None:
                parts = _content_parts(get(message, "content")) + _tool_call_parts(message)
            else:
                text = get(g, "text")
                parts = [text_part(text)] if text else []
            msg: dict[str, Any] = {"role": "assistant", "parts": parts}
            reason = finish_reason_enum(_finish_reason(g))
            if reason:
                msg["finish_reason"] = reason
            out.append(msg)
        attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages_json(out)
    return {k: v for k, v in attrs.items() if v is not None}


# --- chains, tools, retrievers -----------------------------------------------------------------------


def simplify(value: Any, _depth: int = 0) -> Any:
    """LangChain objects as the plain data a reader wants: messages as role/content, prompt values as
    their messages, documents as content/metadata; containers walked (bounded); the rest unchanged
    for :func:`monitor._serialize.dumps_capped`."""
    if value is None or isinstance(value, (str, int, float, bool)) or _depth >= _SIMPLIFY_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: simplify(v, _depth + 1) for i, (k, v) in enumerate(value.items()) if i < _SIMPLIFY_ITEMS}
    if isinstance(value, (list, tuple)):
        return [simplify(v, _depth + 1) for v in value[:_SIMPLIFY_ITEMS]]
    typ = getattr(value, "type", None)
    if isinstance(typ, str) and hasattr(value, "content") and hasattr(value, "additional_kwargs"):
        msg: dict[str, Any] = {"type": typ, "content": value.content}
        calls = getattr(value, "tool_calls", None)
        if calls:
            msg["tool_calls"] = [
                {"id": get(c, "id"), "name": get(c, "name"), "args": get(c, "args")} for c in calls
            ]
        call_id = getattr(value, "tool_call_id", None)
        if call_id:
            msg["tool_call_id"] = call_id
        return msg
    if hasattr(value, "page_content") and hasattr(value, "metadata"):
        doc: dict[str, Any] = {"page_content": value.page_content, "metadata": value.metadata}
        if getattr(value, "id", None):
            doc["id"] = value.id
        return doc
    to_messages = getattr(value, "to_messages", None)
    if callable(to_messages) and hasattr(value, "to_string"):
        return [simplify(m, _depth + 1) for m in to_messages()]
    return value


def capped(value: Any, limit: int = DEFAULT_LIMIT) -> str:
    """Bounded JSON text of a LangChain input/output value."""
    return dumps_capped(simplify(value), limit)


def tool_output(output: Any) -> tuple[Any, str | None]:
    """(result, tool call id): a ``ToolMessage`` result is its content; other values are themselves."""
    if hasattr(output, "tool_call_id") and hasattr(output, "content"):
        call_id = output.tool_call_id
        return output.content, call_id if isinstance(call_id, str) else None
    return output, None


def documents_output(documents: Any) -> str:
    """Retrieved documents as capped JSON (each document's text shares the budget)."""
    docs = list(documents) if isinstance(documents, Sequence) else [documents]
    return capped(docs)
