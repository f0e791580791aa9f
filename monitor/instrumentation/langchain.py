"""LangChain instrumentor: every LangChain run traced, without the app passing callbacks.

How the handler gets in: ``langchain_core.tracers.context.register_configure_hook`` is the supported
way to add a handler to every callback manager LangChain configures (it is how LangSmith's tracer
and ``collect_runs`` get in). A hook is a context variable read with ``.get()`` each time a run's
callbacks are set up; ours is :class:`_GlobalHandler`, which answers the same in every thread and
task (a real ``ContextVar`` set in ``init`` would be empty in threads started earlier and in worker
pools). Hooks cannot be unregistered, so the hook is registered once per process and simply answers
``None`` while no instrumentor is active: ``uninstrument()`` stops new runs from being traced, and
runs already in flight still end their spans. LangChain adds the hook's handler only when that very
object is not already among a manager's handlers, so it is never added twice (child managers inherit
it, and the hook sees it there).

Cost at ``init``: nothing of LangChain is imported. ``langchain_core.tracers.context`` pulls in
LangSmith (seconds on a busy machine), and LangChain itself imports it lazily, when the first run
configures its callbacks; a post-import hook (``wrapt``) registers ours at that moment, before the
hook list is read. An app that has ``langchain_core`` installed but never runs it pays nothing.

Spans (see ``_langchain_handler``): chains ``invoke_workflow <name>``, agents ``invoke_agent <name>``,
tools ``execute_tool <name>``, retrievers ``retrieval <name>`` (the names and attributes of
``@monitor.chain``/``agent``/``tool``/``retriever``), chat models and LLMs ``chat <model>`` /
``text_completion <model>`` with the OTel GenAI attributes. When the model's provider SDK is
instrumented too (``ChatOpenAI`` over our OpenAI instrumentor), the provider call records onto the
LangChain model span instead of adding a second one (``_nesting``): one ``llm`` span per call.

Tested with langchain-core 1.7 and langchain-openai 1.7.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from monitor._guard import guard
from monitor.instrumentation.base import Instrumentor

if TYPE_CHECKING:
    from monitor.instrumentation._langchain_handler import MonitorCallbackHandler

__all__ = ["LangChainInstrumentor", "active_handler"]

_CONTEXT_MODULE = "langchain_core.tracers.context"


class _GlobalHandler:
    """Quacks like the ``ContextVar`` a configure hook reads (``.get()``), but process-wide."""

    def __init__(self) -> None:
        self.instrumentor: LangChainInstrumentor | None = None
        self.handler: MonitorCallbackHandler | None = None

    def get(self, default: Any = None) -> MonitorCallbackHandler | None:
        return self.handler


_slot = _GlobalHandler()
_lock = threading.RLock()
_hook_registered = False
_import_watched = False


def _activate(module: ModuleType) -> None:
    """``langchain_core.tracers.context`` is loaded: register our hook (once) and the active handler.

    Runs inside LangChain's first import of that module (post-import hook) or in ``instrument()``.
    """
    global _hook_registered
    with guard("langchain.activate"), _lock:
        if not _hook_registered:
            # inheritable: child runs' managers carry the handler too (and the hook then sees it there).
            module.register_configure_hook(_slot, True)
            _hook_registered = True
        inst = _slot.instrumentor
        if inst is not None and _slot.handler is None:
            from monitor.instrumentation._langchain_handler import MonitorCallbackHandler

            inst.handler = _slot.handler = MonitorCallbackHandler(inst)


def active_handler() -> MonitorCallbackHandler | None:
    """The handler LangChain currently adds to new runs (None when not instrumented)."""
    return _slot.handler


class LangChainInstrumentor(Instrumentor):
    """Traces ``langchain_core`` runs (and so LangChain, LangGraph and their integrations)."""

    name = "langchain"
    library = "langchain_core"

    def __init__(self) -> None:
        super().__init__()
        self.handler: MonitorCallbackHandler | None = None

    def _instrument(self) -> None:
        global _import_watched
        with _lock:
            _slot.instrumentor = self  # the latest instrument() wins, as for patched functions
            _slot.handler = self.handler = None
            module = sys.modules.get(_CONTEXT_MODULE)
            if module is not None:
                _activate(module)
            elif not _import_watched:
                import wrapt

                wrapt.register_post_import_hook(_activate, _CONTEXT_MODULE)
                _import_watched = True

    def _restore(self) -> None:
        with _lock:
            if _slot.instrumentor is self:
                _slot.instrumentor = None
                _slot.handler = None
        super()._restore()
