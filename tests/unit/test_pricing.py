"""Cost from the shipped price table, user overrides and provider-reported cost (collectors/pricing.py).

Expected costs are computed by hand from the table's USD-per-1M prices, written out as decimals.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from collectors import pricing
from collectors.pricing import Price, Pricer, PriceTable, candidates
from collectors.server import CollectorServer
from collectors.writer import MemoryWriter
from monitor.settings import ConfigError, Settings
from monitor.store.schema import span_row


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer(PriceTable.load())


def llm(model: str = "gpt-4o-mini", *, request: str = "", inp: int = 0, out: int = 0, **kw: Any) -> dict:
    return span_row(
        {
            "kind": "llm",
            "response_model": model,
            "request_model": request,
            "model": model or request,
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": inp + out,
            **kw,
        }
    )


def priced(p: Pricer, row: dict) -> tuple[Any, str]:
    p.apply([row])
    return row["cost_usd"], row["cost_source"]


@pytest.mark.parametrize(
    ("model", "inp", "out", "expected"),
    [
        # 1000·0.15 + 500·0.60 = 450 µ$
        ("gpt-4o-mini", 1000, 500, 0.00045),
        # snapshot suffix → family price
        ("gpt-4o-mini-2024-07-18", 1000, 500, 0.00045),
        # a snapshot with its own price wins over its family: 1000·5 + 1000·15
        ("gpt-4o-2024-05-13", 1000, 1000, 0.02),
        ("gpt-4o-2024-08-06", 1000, 1000, 0.0125),  # 1000·2.5 + 1000·10
        # provider prefixes and case
        ("openai/gpt-4o", 1000, 1000, 0.0125),
        ("azure/GPT-4o-Mini", 1000, 500, 0.00045),
        ("GPT-4O-MINI-2024-07-18", 1000, 500, 0.00045),
        # Bedrock id: region + vendor prefix, date and -v2:0 suffixes → claude-3-5-sonnet (3 / 15)
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", 2000, 100, 0.0075),
        ("claude-3-5-haiku-latest", 10_000, 1000, 0.012),  # 10000·0.8 + 1000·4
        ("claude-sonnet-4-0", 1000, 1000, 0.018),  # alias of claude-sonnet-4
        ("models/gemini-1.5-pro-002", 4000, 1000, 0.01),  # 4000·1.25 + 1000·5
        ("gemini-2.5-flash", 1_000_000, 1_000_000, 2.8),  # 0.30 + 2.50
        ("mistral-large-2411", 1000, 1000, 0.008),  # 2 + 6
        ("codestral-latest", 1000, 1000, 0.0012),  # 0.3 + 0.9
        ("o4-mini-2025-04-16", 1000, 1000, 0.0055),  # 1.1 + 4.4
        ("gpt-4.1-nano-2025-04-14", 10_000, 10_000, 0.005),  # 10000·0.1 + 10000·0.4
        ("gpt-3.5-turbo-0125", 1000, 1000, 0.002),  # 0.5 + 1.5
        # provider-specific Llama prices
        ("llama-3.3-70b-versatile", 1_000_000, 1_000_000, 1.38),  # Groq 0.59 + 0.79
        ("groq/llama-3.1-8b-instant", 1_000_000, 1_000_000, 0.13),  # Groq 0.05 + 0.08
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", 1_000_000, 0, 0.88),  # Together
        ("us.meta.llama3-3-70b-instruct-v1:0", 1_000_000, 1_000_000, 1.44),  # Bedrock 0.72 + 0.72
    ],
)
def test_cost_by_model_with_snapshots_prefixes_and_case(
    pricer: Pricer, model: str, inp: int, out: int, expected: float
) -> None:
    assert priced(pricer, llm(model, inp=inp, out=out)) == (expected, "price_table")


def test_response_model_first_then_request_model(pricer: Pricer) -> None:
    # the served model decides: gpt-4o-2024-05-13 (5/15), not the requested alias
    assert priced(pricer, llm("gpt-4o-2024-05-13", request="gpt-4o", inp=1000, out=0)) == (
        0.005,
        "price_table",
    )
    # unknown response model (an Azure deployment name) → the request model's price
    assert priced(pricer, llm("my-azure-deployment", request="gpt-4o-mini", inp=1000, out=500)) == (
        0.00045,
        "price_table",
    )
    assert priced(pricer, llm("", request="gpt-4o", inp=1000, out=1000)) == (0.0125, "price_table")


def test_cached_tokens_are_taken_out_of_input(pricer: Pricer) -> None:
    # gpt-4o: 500 uncached·2.5 + 1500 cached·1.25 + 100·10 = 1250 + 1875 + 1000 = 4125 µ$
    row = llm("gpt-4o", inp=2000, out=100, attributes={"gen_ai.usage.cache_read.input_tokens": "1500"})
    assert priced(pricer, row) == (0.004125, "price_table")
    assert row["cache_read_tokens"] == 1500
    assert "gen_ai.usage.cache_read.input_tokens" not in row["attributes"]  # mapped, so not "unmapped"


def test_anthropic_cache_reads_and_writes(pricer: Pricer) -> None:
    # claude-3-5-sonnet: uncached 1000·3 + read 8000·0.3 + write 1000·3.75 + out 200·15 = 12150 µ$
    row = llm(
        "claude-3-5-sonnet-20241022",
        inp=10_000,
        out=200,
        attributes={
            "gen_ai.usage.cache_read_input_tokens": "8000",  # OpenLLMetry legacy spelling
            "gen_ai.usage.cache_creation_input_tokens": "1000",
            "other.key": "kept",
        },
    )
    assert priced(pricer, row) == (0.01215, "price_table")
    assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (8000, 1000)
    assert row["attributes"] == {"other.key": "kept"}


def test_input_reported_without_cached_tokens_is_priced_uncached(pricer: Pricer) -> None:
    # Anthropic-native usage: input 100 excludes the 5000 cache reads → 100·3 + 5000·0.3 + 10·15 = 1950 µ$
    row = llm("claude-3-7-sonnet-20250219", inp=100, out=10, cache_read_tokens=5000)
    assert priced(pricer, row) == (0.00195, "price_table")


def test_openinference_cache_and_reasoning_keys(pricer: Pricer) -> None:
    # o3-mini: 600 uncached·1.1 + 400·0.55 + 1000·4.4 = 660 + 220 + 4400 = 5280 µ$ (reasoning is in output)
    row = llm(
        "o3-mini-2025-01-31",
        inp=1000,
        out=1000,
        attributes={
            "llm.token_count.prompt_details.cache_read": "400",
            "llm.token_count.completion_details.reasoning": "750",
        },
    )
    assert priced(pricer, row) == (0.00528, "price_table")
    assert (row["cache_read_tokens"], row["reasoning_tokens"], row["attributes"]) == (400, 750, {})


def test_embeddings_are_priced_on_input(pricer: Pricer) -> None:
    row = llm("text-embedding-3-small", inp=12_345, kind="embedding")
    assert priced(pricer, row) == (0.0002469, "price_table")  # 12345·0.02


def test_provider_reported_cost_wins(pricer: Pricer) -> None:
    row = llm("gpt-4o", inp=1000, out=1000, cost_usd=0.123)  # a normalizer set it (OpenInference, OpenLIT)
    assert priced(pricer, row) == (0.123, "provider")
    row = llm("gpt-4o", inp=1000, out=1000, attributes={"gen_ai.usage.cost": "0.5"})
    assert priced(pricer, row) == (0.5, "provider")
    assert row["attributes"] == {}
    row = llm("mystery", inp=10, out=10, attributes={"llm.cost.total": "0.25"})
    assert priced(pricer, row) == (0.25, "provider")
    row = llm(
        "gpt-4o",
        inp=1,
        out=1,
        attributes={"langfuse.observation.cost_details": '{"input": 0.1, "output": 0.2}'},
    )
    assert priced(pricer, row) == (pytest.approx(0.3, rel=1e-12), "provider")


def test_reported_zero_for_a_call_with_tokens_is_not_trusted() -> None:
    """OpenLIT reports 0 for models its own list lacks: that is the silent $0 we refuse."""
    p = Pricer(PriceTable.load())
    assert priced(p, llm("gpt-4o-mini", inp=1000, out=500, cost_usd=0.0)) == (0.00045, "price_table")
    assert priced(p, llm("local-llama", inp=1000, out=500, cost_usd=0.0)) == (None, "")
    assert p.unpriced() == {("local-llama", "unknown_model"): 1}


def test_unpriced_calls_stay_null_and_are_counted() -> None:
    p = Pricer(PriceTable.load())
    rows = [
        llm("mystery-llm-7b", inp=10, out=5),
        llm("mystery-llm-7b", inp=20, out=5),
        llm("gpt-4o-mini", inp=0, out=0),  # streamed without usage: unknown, not free
        llm("gpt-4o-mini", inp=0, out=0, status="error"),  # failed request: not billed
        llm("mystery-embed", inp=5, kind="embedding"),
        llm("gpt-4o", inp=100, out=100, kind="chain"),  # not a model call: left alone
    ]
    p.apply(rows)
    assert [(r["cost_usd"], r["cost_source"]) for r in rows] == [
        (None, ""),
        (None, ""),
        (None, ""),
        (0.0, "price_table"),
        (None, ""),
        (None, ""),
    ]
    assert p.unpriced() == {
        ("mystery-llm-7b", "unknown_model"): 2,
        ("gpt-4o-mini", "no_usage"): 1,
        ("mystery-embed", "unknown_model"): 1,
    }
    lines = p.metric_lines("llm_monitor_collector_")
    assert (
        'llm_monitor_collector_unpriced_spans_total{model="mystery-llm-7b",reason="unknown_model"} 2' in lines
    )
    assert 'llm_monitor_collector_unpriced_spans_total{model="gpt-4o-mini",reason="no_usage"} 1' in lines
    assert 'llm_monitor_collector_priced_spans_total{source="price_table"} 1' in lines
    assert "# TYPE llm_monitor_collector_unpriced_spans_total counter" in lines


def test_unpriced_model_labels_are_bounded() -> None:
    p = Pricer(PriceTable.load())
    n = pricing.MAX_UNPRICED_MODELS + 50
    p.apply([llm(f"m-{i}", inp=1, out=1) for i in range(n)])
    counts = p.unpriced()
    assert len(counts) == pricing.MAX_UNPRICED_MODELS + 1
    assert counts[(pricing.OTHER, "unknown_model")] == 50
    assert sum(counts.values()) == n
    assert 'model="__other__"' in "\n".join(p.metric_lines("x_"))


def test_prometheus_label_escaping() -> None:
    p = Pricer(PriceTable.load())
    p.apply([llm('we"ird\\model\n', inp=1, out=1)])
    assert 'x_unpriced_spans_total{model="we\\"ird\\\\model\\n",reason="unknown_model"} 1' in p.metric_lines(
        "x_"
    )


def _config(tmp_path: Path, text: str) -> Settings:
    f = tmp_path / "llm-monitor.yaml"
    f.write_text(text)
    return Settings.load({}, config_file=f, environ={})


def test_prices_from_the_config_extend_and_override(tmp_path: Path) -> None:
    settings = _config(
        tmp_path,
        "prices:\n"
        "  Acme/House-Model: {input: 1, output: 2, cached_input: 0.5}\n"
        "  gpt-4o-mini: {input: 1.0, output: 1.0}\n",
    )
    p = Pricer.from_settings(settings)
    # 600·1 + 400·0.5 + 100·2 = 1000 µ$; found through prefix, case and a dated suffix
    row = llm("acme/house-model-2025-01-01", inp=1000, out=100, cache_read_tokens=400)
    assert priced(p, row) == (0.001, "price_table")
    assert priced(p, llm("gpt-4o-mini-2024-07-18", inp=1000, out=1000)) == (0.002, "price_table")
    assert priced(p, llm("gpt-4o", inp=1000, out=1000)) == (0.0125, "price_table")  # shipped still there
    # without cached_input the cache gives no discount
    assert p.table.lookup("gpt-4o-mini") == Price(1.0, 1.0, 1.0, 1.0, "", "gpt-4o-mini")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("prices:\n  bad-model: {input: abc, output: 1}\n", "prices: 'bad-model': input must be a number"),
        ("prices:\n  bad-model: {input: 1}\n", "prices: 'bad-model': missing output"),
        (
            "prices:\n  bad-model: {input: 1, output: -2}\n",
            "prices: 'bad-model': output must be a finite number >= 0",
        ),
        ("prices:\n  bad-model: {inptu: 1, output: 2}\n", "prices: 'bad-model': unknown field 'inptu'"),
        (
            "prices:\n  bad-model: {input: 1, output: 2, cached_input: true}\n",
            "'bad-model': cached_input must be",
        ),
        ("prices:\n  bad-model: 3\n", "prices: 'bad-model' must be a mapping"),
        ("prices: [gpt-4o]\n", "prices: expected a mapping"),
    ],
)
def test_bad_price_lines_are_one_clear_error(tmp_path: Path, yaml_text: str, message: str) -> None:
    settings = _config(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as e:
        CollectorServer(settings, writer=MemoryWriter())  # refused at start-up, not on the hot path
    text = str(e.value)
    assert message in text and str(tmp_path) in text and "\n" not in text


def test_candidates_are_most_specific_first() -> None:
    # every prefix variant of the full name before any suffix is stripped
    assert candidates("Azure/GPT-4o-2024-08-06") == [
        "azure/gpt-4o-2024-08-06",
        "gpt-4o-2024-08-06",
        "azure/gpt-4o",
        "gpt-4o",
    ]
    assert candidates("claude-3-5-sonnet-v2@20241022") == [
        "claude-3-5-sonnet-v2@20241022",
        "claude-3-5-sonnet-v2",
        "claude-3-5-sonnet",
    ]
    assert candidates("gpt-4o") == ["gpt-4o"]


def test_lookup_cache_is_bounded() -> None:
    t = PriceTable.load()
    for i in range(pricing.MAX_RESOLVED + 10):
        t.lookup(f"unknown-{i}")
    assert len(t._resolved) <= pricing.MAX_RESOLVED


def test_shipped_table_is_dated_sourced_and_covers_the_big_providers() -> None:
    raw = json.loads(resources.files("collectors").joinpath("prices.json").read_text())
    models = raw["models"]
    for name, entry in models.items():
        assert name == name.lower(), name
        if "alias_of" in entry:
            assert entry["alias_of"] in models
            continue
        assert re.fullmatch(r"https://\S+ (\(.+\) )?as of \d{4}-\d{2}", entry["source"]), name
    table = PriceTable.load()
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "o1",
        "o3",
        "o4-mini",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "claude-3-haiku-20240307",
        "claude-3-5-sonnet-20240620",
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "gemini-1.5-flash",
        "gemini-2.0-flash",
        "gemini-2.5-pro",
        "mistral-small-latest",
        "mistral-embed",
        "llama-3.3-70b-versatile",
    ):
        assert table.lookup(model) is not None, model
    # Anthropic entries carry their cache read price (a tenth of input)
    sonnet = table.lookup("claude-sonnet-4")
    assert sonnet is not None and sonnet.cached_input == pytest.approx(sonnet.input / 10)


@pytest.fixture(params=["native", "python"])
def price_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways ``apply`` prices the usual rows: the C loop (when built, as it is on any machine with a C
    compiler) and the Python one."""
    if request.param == "python":
        monkeypatch.setattr(pricing, "_native_price", None)
    elif pricing._native_price is None:
        import shutil

        if shutil.which("cc") or shutil.which("gcc"):  # this machine builds it: missing is a bug
            raise AssertionError("collectors._normalize_native.price_usual is not built")
        pytest.skip("native pricing not built: no C compiler on this machine")
    return str(request.param)


def test_the_c_loop_computes_price_cost_to_the_last_bit(price_path: str) -> None:
    """Random token counts (up to 2**53 - 1, the C loop's bound) and rates, cache tokens larger than the
    input too: every cost equals ``Price.cost``'s float exactly, and every row is priced in the loop."""
    import random

    rng = random.Random(5)
    prices = [Price(2.5, 10.0, 1.25, 2.5), Price(0.15, 0.6, 0.075, 0.15), Price(3.0, 15.0, 0.3, 3.75)]
    prices += [Price(*(rng.uniform(0, 100) for _ in range(4))) for _ in range(20)]
    table = PriceTable({f"m{i}": p for i, p in enumerate(prices)})
    rows, want = [], []
    for _ in range(3000):
        i = rng.randrange(len(prices))
        bound = rng.choice((10, 5000, 10**9, 2**53))
        inp, out, cr, cw = (rng.randrange(bound) for _ in range(4))
        row = llm(f"m{i}", inp=inp, out=out or 1, cache_read_tokens=cr, cache_write_tokens=cw)
        rows.append(row)
        want.append(prices[i].cost(inp, out or 1, cr, cw))
    p = Pricer(table)
    p.apply(rows)
    assert [r["cost_usd"] for r in rows] == want
    assert all(r["cost_source"] == "price_table" for r in rows)
    assert f'p_priced_spans_total{{source="price_table"}} {len(rows)}' in p.metric_lines("p_")


def test_rows_the_c_loop_leaves_take_the_python_path_unchanged(price_path: str) -> None:
    """Shapes the C loop does not take (bools, floats, huge or negative counts, a kind that is not a str,
    a non-dict row or attributes) come out exactly as ``price_row`` leaves them."""
    odd = [
        llm("gpt-4o-mini", inp=True, out=3),
        llm("gpt-4o-mini", inp=12.0, out=3),
        llm("gpt-4o-mini", inp=2**60, out=3),
        llm("gpt-4o-mini", inp=-5, out=3),
        llm("gpt-4o-mini", inp=10, out=3, cache_read_tokens=2**60),
        llm("gpt-4o-mini", inp=10, out=3, kind=None),
        llm("gpt-4o-mini", inp=10, out=3, attributes=[("server.port", "443")]),
        llm("no-such-model", inp=10, out=3),
        llm("gpt-4o-mini", inp=0, out=0),
        llm("gpt-4o-mini", inp=10, out=3),
    ]
    got = [dict(r) for r in odd]
    want = [dict(r) for r in odd]
    fast, slow = Pricer(PriceTable.load()), Pricer(PriceTable.load())
    fast.apply(got)
    for row in want:
        slow.price_row(row)
    assert got == want
    assert got[-1]["cost_source"] == "price_table" and got[-3]["cost_usd"] is None
    assert fast.unpriced() == {("no-such-model", "unknown_model"): 1, ("gpt-4o-mini", "no_usage"): 1}


def test_batch_fast_path_prices_exactly_as_price_row_does(price_path: str) -> None:
    """``apply`` inlines the usual row's path: every mix of kind, models, usage, status, a preset cost or
    source, cache/cost attribute keys and partial rows gives the rows and counters ``price_row`` gives."""
    import itertools
    import random

    rng = random.Random(11)
    models = ("gpt-4o-mini", "claude-sonnet-4-5", "mystery-llm", "")
    variants = []
    for kind, resp, req, tokens, status, preset, attrs in itertools.product(
        ("llm", "embedding", "chain"),
        models,
        models,
        ((0, 0), (1200, 300), (0, 40)),
        ("ok", "error"),
        (None, ("cost", 0.5), ("cost", 0.0), ("source", "provider")),
        (
            {},
            {"server.port": "443"},
            {"gen_ai.usage.cache_read_input_tokens": "100"},
            {"gen_ai.usage.cost": "0.25"},
        ),
    ):
        extra: dict[str, Any] = {"status": status, "attributes": dict(attrs)}
        if preset is not None and preset[0] == "cost":
            extra["cost_usd"] = preset[1]
        elif preset is not None:
            extra["cost_usd"], extra["cost_source"] = 0.1, preset[1]
        variants.append(llm(resp, request=req, inp=tokens[0], out=tokens[1], kind=kind, **extra))
    variants.append({"kind": "llm", "response_model": "gpt-4o", "input_tokens": 10})  # partial row
    rng.shuffle(variants)
    fast, slow = Pricer(PriceTable.load()), Pricer(PriceTable.load())
    got = [dict(r, attributes=dict(r.get("attributes", {}))) for r in variants]
    want = [dict(r, attributes=dict(r.get("attributes", {}))) for r in variants]
    for i in range(0, len(got), 37):  # several requests, so the per-request memo starts over
        fast.apply(got[i : i + 37])
    unpriced: dict[tuple[str, str], int] = {}
    sources: dict[str, int] = {"provider": 0, "price_table": 0}
    for row in want:  # the reference: price_row on each row, counted as apply counts
        miss = slow.price_row(row)
        if miss is not None:
            unpriced[miss] = unpriced.get(miss, 0) + 1
        elif row.get("cost_source"):
            sources[row["cost_source"]] += 1
    assert got == want
    assert sources["price_table"] > 100 and sources["provider"] > 100 and len(unpriced) == 5
    assert fast.unpriced() == unpriced
    for src, n in sources.items():
        assert f'p_priced_spans_total{{source="{src}"}} {n}' in fast.metric_lines("p_")
