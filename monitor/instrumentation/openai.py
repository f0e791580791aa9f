"""OpenAI instrumentor: chat completions, legacy completions and embeddings; sync, async, streaming.

Patches the SDK's resource classes (so every client instance, including ``AzureOpenAI`` and clients
created before ``init``, is covered):

* ``openai.resources.chat.completions.completions``: ``Completions.create``, ``AsyncCompletions.create``
  and ``.parse`` on both (structured outputs; the ``.stream()`` helper goes through ``create``)
* ``openai.resources.completions``: ``Completions.create``, ``AsyncCompletions.create`` (legacy text)
* ``openai.resources.embeddings``: ``Embeddings.create``, ``AsyncEmbeddings.create``

One span per call, named ``{operation} {model}``, kind CLIENT, with the current OTel GenAI attributes
(see ``_openai_extract``). Streams (``stream=True``) come back wrapped in a proxy that is still an
``openai.Stream`` / ``openai.AsyncStream`` (``_stream``). ``openai`` itself is imported only when
``instrument()`` runs, so the registry can load this class without the library present.

Not covered yet (later issues): the Responses API, and the ``with_raw_response`` /
``with_streaming_response`` wrappers, whose calls get a span without response attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor import semconv as sc
from monitor._guard import guard
from monitor.instrumentation import _openai_extract as ex
from monitor.instrumentation._genai import LLMCall
from monitor.instrumentation._stream import Accumulator, AsyncStreamProxy, StreamState, SyncStreamProxy
from monitor.instrumentation.base import Instrumentor

__all__ = ["OpenAIInstrumentor"]

_CHAT_MODULE = "openai.resources.chat.completions.completions"
_COMPLETIONS_MODULE = "openai.resources.completions"
_EMBEDDINGS_MODULE = "openai.resources.embeddings"


@dataclass(frozen=True)
class Operation:
    """What differs between OpenAI operations; the call/stream/error handling around it is shared."""

    name: str  # gen_ai.operation.name
    kind: str  # llm_monitor.span.kind
    request: Callable[[Mapping[str, Any], bool], dict[str, Any]]
    response: Callable[[Any, bool], dict[str, Any]]
    accumulator: Callable[[], Accumulator] | None = None


CHAT = Operation(
    sc.OP_CHAT, "llm", ex.chat_request_attributes, ex.chat_response_attributes, ex.ChatAccumulator
)
TEXT_COMPLETION = Operation(
    sc.OP_TEXT_COMPLETION,
    "llm",
    ex.text_request_attributes,
    ex.text_response_attributes,
    ex.CompletionAccumulator,
)
EMBEDDINGS = Operation(
    sc.OP_EMBEDDINGS, "embedding", ex.embeddings_request_attributes, ex.embeddings_response_attributes
)


class OpenAIInstrumentor(Instrumentor):
    """Traces the ``openai`` Python SDK (v1 and later)."""

    name = "openai"
    library = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._stream_types: tuple[type, type] | None = None

    def _instrument(self) -> None:
        import openai

        self._stream_types = (openai.Stream, openai.AsyncStream)
        for module, sync_path, async_path, op in (
            (_CHAT_MODULE, "Completions.create", "AsyncCompletions.create", CHAT),
            (_CHAT_MODULE, "Completions.parse", "AsyncCompletions.parse", CHAT),  # structured outputs
            (_COMPLETIONS_MODULE, "Completions.create", "AsyncCompletions.create", TEXT_COMPLETION),
            (_EMBEDDINGS_MODULE, "Embeddings.create", "AsyncEmbeddings.create", EMBEDDINGS),
        ):
            self._wrap(module, sync_path, functools.partial(self._call_sync, op))
            self._wrap(module, async_path, functools.partial(self._call_async, op))

    # -- shared steps (every one guarded; the user's call runs outside them) -------------------------

    def _begin(self, op: Operation, resource: Any, kwargs: Mapping[str, Any]) -> LLMCall | None:
        """Start the span with every request attribute, or return None if our code fails."""
        with guard(f"openai.{op.name}.request"):
            capture = self.capture_content
            attrs = ex.common_request_attributes(op.name, op.kind, resource, kwargs)
            attrs.update(op.request(kwargs, capture))
            model = attrs.get(sc.GEN_AI_REQUEST_MODEL)
            name = f"{op.name} {model}" if model else op.name
            return LLMCall.start(self.tracer, name, attrs, capture)
        return None

    def _finish(self, op: Operation, call: LLMCall, result: Any) -> Any:
        """Record the response, or hand a stream to a proxy that finishes the span later."""
        with guard(f"openai.{op.name}.response"):
            if not call.recording:
                call.end()
                return result
            if op.accumulator is not None and self._stream_types is not None:
                sync_type, async_type = self._stream_types
                if isinstance(result, sync_type):
                    return SyncStreamProxy(result, StreamState(call, op.accumulator()))
                if isinstance(result, async_type):
                    return AsyncStreamProxy(result, StreamState(call, op.accumulator()))
            call.set_attributes(op.response(result, call.capture_content))
        call.end()
        return result

    # -- wrappers (wrapt signature: wrapped, instance, args, kwargs) ----------------------------------

    def _call_sync(
        self,
        op: Operation,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        call = self._begin(op, instance, kwargs) if self.active else None
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            with call.activated():
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._finish(op, call, result)

    async def _call_async(
        self,
        op: Operation,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        call = self._begin(op, instance, kwargs) if self.active else None
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            with call.activated():
                result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return self._finish(op, call, result)
