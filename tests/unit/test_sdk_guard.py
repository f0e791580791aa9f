"""The internal-error guard and the bounded serialiser underneath every captured value."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pytest

from monitor import _guard
from monitor._guard import guard, guarded
from monitor._serialize import DEFAULT_LIMIT, dumps_capped, safe_repr, to_jsonable, truncate


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard as an application sees it: internal errors swallowed."""
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ENV, raising=False)


def test_swallows_and_logs_once_per_site(production: None, caplog: pytest.LogCaptureFixture) -> None:
    before = _guard.internal_error_count()
    with caplog.at_level(logging.WARNING, logger="monitor"):
        for _ in range(3):
            with guard("test.site-a"):
                raise ValueError("ours")
        with guard("test.site-b"):
            raise KeyError("other site")
    assert _guard.internal_error_count() - before == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("test.site-a" in m for m in messages) == 1
    assert sum("test.site-b" in m for m in messages) == 1
    assert caplog.records[0].exc_info is not None  # the first report carries our traceback


def test_reraises_under_the_test_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "1")
    err = ValueError("bug")
    with pytest.raises(ValueError) as info, guard("test.raise"):
        raise err
    assert info.value is err


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_always_propagate(production: None, exc: BaseException) -> None:
    with pytest.raises(type(exc)), guard("test.base"):
        raise exc


def test_no_exception_passes_through(production: None) -> None:
    with guard("test.ok") as g:
        value = 1
    assert value == 1 and g.site == "test.ok"


def test_guarded_decorator_returns_default(production: None) -> None:
    @guarded(default="fallback")
    def broken(x: int) -> str:
        raise RuntimeError(x)

    @guarded
    def fine(x: int) -> int:
        return x * 2

    assert broken(1) == "fallback"
    assert fine(2) == 4
    assert broken.__name__ == "broken"


def test_guarded_reraises_under_test_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_guard.RAISE_INTERNAL_ENV, "true")

    @guarded
    def broken() -> None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        broken()


def test_truncate_marks_what_was_cut() -> None:
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdefgh", 3) == "abc…[truncated 5 chars]"


def test_to_jsonable_shapes() -> None:
    @dataclass
    class P:
        a: int
        b: list[int]

    class Model:  # duck-typed like pydantic v2
        def model_dump(self, mode: str = "python") -> dict[str, Any]:
            return {"m": mode}

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert to_jsonable(P(1, [2])) == {"a": 1, "b": [2]}
    assert to_jsonable(Model()) == {"m": "json"}
    assert to_jsonable(b"abc") == "<3 bytes>"
    assert to_jsonable(math.inf) == "inf"
    assert to_jsonable({1: "x"}) == {"1": "x"}
    assert to_jsonable(list(range(1000)))[-1] == "… 800 more items"
    deep = to_jsonable(cyclic)  # bounded depth instead of infinite recursion
    assert isinstance(deep, list)


def test_dumps_capped_never_raises_and_stays_bounded() -> None:
    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError

        def __iter__(self) -> Any:
            raise RuntimeError

    assert dumps_capped(Evil()) == '"<Evil object>"'
    assert safe_repr(Evil()) == "<Evil object>"
    huge = dumps_capped({"k": "v" * 100_000, "other": 1})
    assert len(huge) <= DEFAULT_LIMIT + 40
    assert '"other":1' in huge
    assert dumps_capped("x" * 100_000).endswith("chars]")
