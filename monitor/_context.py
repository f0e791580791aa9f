"""Request-scoped context (user, session, tags, metadata, prompt) and the processor that stamps it.

Why contextvars: they follow the code, not the thread. Each asyncio task starts with a copy of its
creator's context, so ``monitor.context(user_id=...)`` around a request handler reaches every span the
handler starts, concurrent requests never see each other's values, and a value set inside a task does
not leak back to its parent. Threads start with an empty context (as OpenTelemetry's own context does);
wrap the thread's work in its own ``monitor.context`` or use ``contextvars.copy_context().run``.

The values reach spans through a span processor's ``on_start`` (``monitor._tracing``), which runs
synchronously in the thread/task that starts the span, for every span of the provider, ours or any
other instrumentation's. This module stays free of the OpenTelemetry SDK so ``import monitor`` is cheap.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

from monitor import semconv as sc
from monitor._serialize import dumps_capped, to_jsonable, truncate

__all__ = [
    "LLM_OPERATIONS",
    "PromptInfo",
    "RequestContext",
    "context",
    "context_attributes",
    "current",
    "current_prompt",
    "prompt",
]

# Operations whose spans are model calls: only those carry the prompt attributes.
LLM_OPERATIONS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_GENERATE_CONTENT})


@dataclass(frozen=True)
class RequestContext:
    """What ``monitor.context`` holds; immutable so nested scopes can share and merge it safely."""

    user_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def merged(self, inner: RequestContext) -> RequestContext:
        """Inner scope wins for scalars; tags are the ordered union; metadata keys are overlaid."""
        tags = self.tags + tuple(t for t in inner.tags if t not in self.tags)
        return RequestContext(
            user_id=inner.user_id if inner.user_id is not None else self.user_id,
            session_id=inner.session_id if inner.session_id is not None else self.session_id,
            tags=tags,
            metadata=MappingProxyType({**self.metadata, **inner.metadata}),
        )


@dataclass(frozen=True)
class PromptInfo:
    """The prompt template an LLM call was rendered from (links spans to prompt versions)."""

    name: str
    version: str | None = None
    template: str | None = None
    variables: Mapping[str, Any] | None = None


_CONTEXT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "llm_monitor_context", default=None
)
_PROMPT: contextvars.ContextVar[PromptInfo | None] = contextvars.ContextVar(
    "llm_monitor_prompt", default=None
)


def current() -> RequestContext | None:
    """The request context in effect here, if any."""
    return _CONTEXT.get()


def current_prompt() -> PromptInfo | None:
    """The prompt in effect here, if any."""
    return _PROMPT.get()


def _as_tags(tags: Iterable[str] | str | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        return (tags,)
    out: list[str] = []
    for t in tags:
        s = t if isinstance(t, str) else str(t)
        if s not in out:
            out.append(s)
    return tuple(out)


class _Scope:
    """Shared enter/exit logic: set a context variable, restore it on exit (also from ``async with``).

    Re-entrant: the same object may be entered again while already active (tokens are a stack).
    """

    _var: contextvars.ContextVar[Any]

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[Any]] = []

    def _value(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> _Scope:
        self._tokens.append(self._var.set(self._value()))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._tokens:
            return
        token = self._tokens.pop()
        try:
            self._var.reset(token)
        except ValueError:
            # Exited in another context than entered (e.g. across a generator's yield): restore by value.
            self._var.set(token.old_value if token.old_value is not contextvars.Token.MISSING else None)

    async def __aenter__(self) -> _Scope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class context(_Scope):
    """Attach ``user_id``, ``session_id``, ``tags`` and ``metadata`` to every span started inside.

    Nested scopes merge: the inner value wins for ids and metadata keys, tags accumulate.
    Usable as ``with`` and ``async with``.
    """

    _var = _CONTEXT

    def __init__(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Iterable[str] | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.values = RequestContext(
            user_id=None if user_id is None else str(user_id),
            session_id=None if session_id is None else str(session_id),
            tags=_as_tags(tags),
            metadata=MappingProxyType({str(k): v for k, v in (metadata or {}).items()}),
        )

    def _value(self) -> RequestContext:
        outer = _CONTEXT.get()
        return self.values if outer is None else outer.merged(self.values)


class prompt(_Scope):
    """Record which prompt template (name, version, template, variables) the LLM calls inside used.

    The innermost ``prompt`` scope replaces outer ones entirely (a nested prompt is a different prompt,
    it must not inherit the outer one's version). Only model-call spans are stamped.
    """

    _var = _PROMPT

    def __init__(
        self,
        name: str,
        version: str | int | None = None,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.values = PromptInfo(
            name=str(name),
            version=None if version is None else str(version),
            template=template,
            variables=dict(variables) if variables is not None else None,
        )

    def _value(self) -> PromptInfo:
        return self.values


def context_attributes(
    ctx: RequestContext | None, info: PromptInfo | None, is_llm: bool, *, content: bool = True
) -> dict[str, Any]:
    """Span attributes for the given context (pure; used by the processor and by tests).

    ``content=False`` (``capture_content=False``) leaves out the prompt template and variables.
    """
    attrs: dict[str, Any] = {}
    if ctx is not None:
        if ctx.user_id is not None:
            attrs[sc.USER_ID] = ctx.user_id
        if ctx.session_id is not None:
            attrs[sc.SESSION_ID] = ctx.session_id
            attrs[sc.GEN_AI_CONVERSATION_ID] = ctx.session_id
        if ctx.tags:
            attrs[sc.LLM_MONITOR_TAGS] = list(ctx.tags)
        for key, value in ctx.metadata.items():
            if isinstance(value, (str, bool, int, float)):
                attrs[sc.LLM_MONITOR_METADATA_PREFIX + key] = (
                    truncate(value) if isinstance(value, str) else value
                )
            else:
                attrs[sc.LLM_MONITOR_METADATA_PREFIX + key] = dumps_capped(value)
    if info is not None and is_llm:
        attrs[sc.LLM_MONITOR_PROMPT_NAME] = info.name
        if info.version is not None:
            attrs[sc.LLM_MONITOR_PROMPT_VERSION] = info.version
        if info.template is not None and content:
            attrs[sc.LLM_MONITOR_PROMPT_TEMPLATE] = truncate(info.template)
        if info.variables is not None and content:
            attrs[sc.LLM_MONITOR_PROMPT_VARIABLES] = truncate(
                json.dumps(
                    to_jsonable(info.variables), ensure_ascii=False, sort_keys=True, separators=(",", ":")
                )
            )
    return attrs
