"""BraveSearch against a real HTTP server on loopback that answers in Brave's reply shapes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fake_apis import Canned, FakeAPI, fixture, fixture_json, refused_url

from agentic.errors import ConfigError, SearchError, ToolArgumentsError
from agentic.tools import ToolContext, ToolErrorKind, ToolExecutor, ToolRetry
from agentic.tools._http import fit_json
from agentic.tools.brave import BraveSearch
from agentic.types import ToolCall

PATH = "/res/v1/web/search"
SAMPLE = fixture("brave_sample.json")
ERRORS = fixture_json("brave_errors.json")
RATE_LIMITED = ERRORS["rate_limited_429"]


def ctx(query: str = "q") -> ToolContext[None]:
    call = ToolCall(call_id="c1", tool_name="brave_search", arguments={"query": query})
    return ToolContext(deps=None, session_id="s", turn_id="t", call=call)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.route(PATH, Canned(body=SAMPLE))
        yield server


def brave(api: FakeAPI | str, **kwargs: Any) -> BraveSearch:
    base = api if isinstance(api, str) else api.url("/res/v1")
    kwargs.setdefault("retry_wait_min", 0.01)
    return BraveSearch("test-key", base_url=base, **kwargs)


async def search(tool: BraveSearch, query: str = "how do sourdough starters work") -> Any:
    try:
        return json.loads(await tool.call({"query": query}, ctx(query)))
    finally:
        await tool.aclose()


async def failure(tool: BraveSearch, query: str = "sourdough") -> str:
    """The message of the SearchError the call raised."""
    with pytest.raises(SearchError) as info:
        await search(tool, query)
    return str(info.value)


def rate_limited(remaining: str, reset: str, **extra: str) -> Canned:
    headers = {"X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset, **extra}
    return Canned(429, RATE_LIMITED["body"], headers=headers)


# -- the request ---------------------------------------------------------------------------------


async def test_sends_the_key_the_query_and_the_configured_options(api: FakeAPI) -> None:
    tool = brave(api, count=7, country="de", search_lang="de", safesearch="strict", freshness="pw")
    await search(tool, "  sauerteig  ")
    (seen,) = api.requests
    assert seen.path == PATH
    assert seen.headers["x-subscription-token"] == "test-key"
    assert seen.headers["accept"] == "application/json"
    assert {k: v[0] for k, v in seen.query.items()} == {
        "q": "sauerteig",
        "count": "7",
        "country": "de",
        "search_lang": "de",
        "safesearch": "strict",
        "freshness": "pw",
        "text_decorations": "false",
        "extra_snippets": "true",
    }


async def test_defaults_leave_out_unset_options(api: FakeAPI) -> None:
    await search(brave(api, extra_snippets=False))
    (seen,) = api.requests
    assert sorted(seen.query) == [
        "count",
        "extra_snippets",
        "q",
        "safesearch",
        "text_decorations",
    ]
    assert seen.param("count") == "5"
    assert seen.param("safesearch") == "moderate"
    assert seen.param("extra_snippets") == "false"


async def test_the_key_comes_from_the_environment(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAVE_SEARCH_API_KEY", "env-key")
    await search(BraveSearch(base_url=api.url("/res/v1")))
    assert api.requests[0].headers["x-subscription-token"] == "env-key"


async def test_one_connection_serves_successive_calls(api: FakeAPI) -> None:
    tool = brave(api)
    await tool.call({"query": "a"}, ctx("a"))
    await tool.call({"query": "b"}, ctx("b"))
    await tool.aclose()
    first, second = api.requests
    assert first.peer == second.peer


def test_a_tool_works_on_successive_event_loops(api: FakeAPI) -> None:
    tool = brave(api)
    for query in ("first loop", "second loop"):
        out = asyncio.run(tool.call({"query": query}, ctx(query)))
        assert json.loads(out)["query"] == query
    asyncio.run(tool.aclose())


async def test_an_injected_client_is_used_and_left_open(api: FakeAPI) -> None:
    async with httpx2.AsyncClient() as client:
        async with brave(api, client=client) as tool:
            await tool.call({"query": "q"}, ctx())
        assert not client.is_closed
        assert (await client.get(api.url(PATH))).status_code == 200


# -- cleaning ------------------------------------------------------------------------------------


async def test_results_follow_brave_ranking_across_every_block(api: FakeAPI) -> None:
    out = await search(brave(api))
    assert out["query"] == "how do sourdough starters work"
    assert [(r["type"], r.get("title", "")[:24]) for r in out["results"]] == [
        ("web", "Sourdough Starter Basics"),
        ("web", "The microbiology of sour"),
        ("faq", "Sourdough Starter Basics"),
        ("faq", "Day-by-day starter sched"),
        ("web", "Day-by-day starter sched"),
        ("news", "Regional bakery revives "),
        ("discussion", "Starter not rising after"),
        ("web", "Why does my starter smel"),
        ("video", "Making a sourdough start"),
        ("web", "Sourdough - Encyclopedia"),
        ("infobox", "Sourdough"),
    ]


async def test_results_keep_what_a_model_uses_and_no_html(api: FakeAPI) -> None:
    out = await search(brave(api))
    results = out["results"]
    assert results[0] == {
        "type": "web",
        "title": "Sourdough Starter Basics: Yeast, Bacteria and Time",
        "url": "https://bakery-notes.example.com/guides/sourdough-starter-basics",
        "description": "A sourdough starter is a mix of flour and water colonised by wild yeasts "
        "and lactic acid bacteria. Regular feeding keeps both populations active.",
        "age": "March 11, 2024",
        "extra_snippets": [
            "Yeasts produce carbon dioxide that leavens the dough, while the bacteria produce "
            "lactic and acetic acid that give the bread its tang.",
            "Most starters become reliably active after five to ten days of daily feeding at "
            "room temperature.",
            "A ripe starter roughly doubles in volume within four to eight hours of a feed.",
        ],
    }
    faq = results[2]
    assert faq["question"] == "How long does a sourdough starter take to become active?"
    assert faq["answer"] == "Usually five to ten days of daily feeding at room temperature."
    discussion = results[6]
    assert discussion["forum"] == "breadmaking"
    assert discussion["answers"] == 42
    assert discussion["top_comment"].startswith("Try feeding twice a day")
    infobox = results[-1]
    assert infobox["url"] == "https://encyclopedia.example.org/wiki/Sourdough"
    assert infobox["description"].startswith("Sourdough bread is leavened by a starter culture")
    assert infobox["attributes"] == [
        "Type: Bread",
        "Main ingredients: Flour, water, salt, starter culture",
    ]
    text = json.dumps(out)
    assert "<strong>" not in text
    assert "thumbnail" not in text
    assert "meta_url" not in text


async def test_tags_are_stripped_and_entities_unescaped(api: FakeAPI) -> None:
    reply = json.loads(SAMPLE)
    first = reply["web"]["results"][0]
    first["title"] = "Flour &amp; water: <b>the</b> basics"
    first["description"] = "Use a 1:1 ratio &lt;by weight&gt; &#x27;always&#x27; if x < y"
    api.route(PATH, Canned(body=reply))
    out = await search(brave(api))
    assert out["results"][0]["title"] == "Flour & water: the basics"
    assert out["results"][0]["description"] == "Use a 1:1 ratio <by weight> 'always' if x < y"


async def test_without_mixed_every_block_is_listed_infobox_first(api: FakeAPI) -> None:
    reply = json.loads(SAMPLE)
    del reply["mixed"]
    api.route(PATH, Canned(body=reply))
    out = await search(brave(api))
    types = [r["type"] for r in out["results"]]
    assert types == ["infobox", *["web"] * 5, "faq", "faq", "news", "discussion", "video"]


async def test_results_missing_from_mixed_still_come_last(api: FakeAPI) -> None:
    reply = json.loads(SAMPLE)
    reply["mixed"]["main"] = [{"type": "news", "all": True}, {"type": "web", "index": 9}]
    api.route(PATH, Canned(body=reply))
    out = await search(brave(api))
    types = [r["type"] for r in out["results"]]
    assert types[:2] == ["news", "infobox"]  # main, then side, then the rest
    assert len(types) == 11


@pytest.mark.parametrize("cap", [1000, 1500, 2000, 4000])
async def test_output_fits_the_cap_dropping_snippets_then_results(api: FakeAPI, cap: int) -> None:
    tool = brave(api, max_output_chars=cap)
    text = await tool.call({"query": "sourdough"}, ctx("sourdough"))
    await tool.aclose()
    assert len(text) <= cap
    results = json.loads(text)["results"]  # still valid JSON: never cut mid-way
    assert results[0]["title"] == "Sourdough Starter Basics: Yeast, Bacteria and Time"
    uncapped = await search(brave(api))
    assert len(results) <= len(uncapped["results"])
    if len(results) < len(uncapped["results"]):  # results are dropped only once snippets are gone
        assert not any("extra_snippets" in r for r in results)


async def test_a_huge_single_result_is_shortened_not_cut(api: FakeAPI) -> None:
    reply = {
        "web": {
            "results": [{"title": "Big", "url": "https://x.example", "description": "w " * 5000}]
        }
    }
    api.route(PATH, Canned(body=reply))
    tool = brave(api, max_output_chars=1000)
    text = await tool.call({"query": "big"}, ctx("big"))
    await tool.aclose()
    assert len(text) <= 1000
    (result,) = json.loads(text)["results"]
    assert result["title"] == "Big"
    assert result["description"].endswith("…")


async def test_the_cap_counts_the_escaping_of_special_tokens(api: FakeAPI) -> None:
    reply = {"web": {"results": [{"title": "t", "url": "u", "description": "<|eot_id|>" * 300}]}}
    api.route(PATH, Canned(body=reply))
    tool = brave(api, max_output_chars=1000)
    response = await ToolExecutor([tool]).run_one(
        ToolCall(call_id="c", tool_name="brave_search", arguments={"query": "x"})
    )
    await tool.aclose()
    assert not response.truncated  # the tool fitted it: the executor had nothing to cut
    assert isinstance(response.content, str)
    assert len(response.content) <= 1000
    assert "<|" not in response.content


# -- empty results and errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        {"type": "search", "query": {"original": "zzqx"}},
        {
            "type": "search",
            "web": {"results": []},
            "mixed": {"main": [{"type": "web", "index": 0}]},
        },
    ],
)
async def test_no_results_asks_the_model_to_rephrase(api: FakeAPI, reply: dict[str, Any]) -> None:
    api.route(PATH, Canned(body=reply))
    with pytest.raises(ToolRetry, match=r"^search failed: no results for 'zzqx'"):
        await search(brave(api), "zzqx")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Canned(422, ERRORS["invalid_token_422"]["body"]),
            "search failed: Brave Search rejected the API key (HTTP 422 "
            "SUBSCRIPTION_TOKEN_INVALID: The provided subscription token is invalid.); "
            "check BRAVE_SEARCH_API_KEY",
        ),
        (
            Canned(422, ERRORS["validation_422"]["body"]),
            "search failed: Brave Search rejected the request (HTTP 422 VALIDATION: "
            "Unable to validate request parameter(s))",
        ),
        (
            Canned(401, "Unauthorized", "text/plain"),
            "search failed: Brave Search rejected the API key (HTTP 401: Unauthorized); "
            "check BRAVE_SEARCH_API_KEY",
        ),
        (
            Canned(
                500, "<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"
            ),
            "search failed: Brave Search is unavailable (HTTP 500: 500 Internal Server Error)",
        ),
        (
            Canned(503, ""),
            "search failed: Brave Search is unavailable (HTTP 503)",
        ),
        (
            Canned(200, "<html>maintenance</html>", "text/html"),
            "search failed: Brave Search sent a reply that is not JSON (HTTP 200, text/html): "
            "maintenance",
        ),
        (
            Canned(200, {"web": {"results": "none"}}),
            "search failed: Brave Search sent a reply of an unexpected shape "
            "(web.results: Input should be a valid array)",
        ),
    ],
    ids=["bad-token", "validation", "401", "500-html", "503-empty", "not-json", "bad-shape"],
)
async def test_error_replies_become_clear_errors(
    api: FakeAPI, reply: Canned, expected: str
) -> None:
    api.route(PATH, reply)
    message = await failure(brave(api))
    assert message == expected
    assert len(api.requests) == 1  # only 429 is retried


async def test_a_slow_server_times_out(api: FakeAPI) -> None:
    api.route(PATH, Canned(body=SAMPLE, delay=3))
    started = time.monotonic()
    message = await failure(brave(api, timeout=0.1))
    assert message == "search failed: Brave Search did not answer within 0.1s"
    assert time.monotonic() - started < 2  # the server would have taken 3 s


async def test_a_refused_connection_is_reported() -> None:
    base = refused_url()
    message = await failure(brave(base))
    assert message.startswith(f"search failed: could not reach Brave Search at {base}/web/search (")
    assert "ConnectError" in message


async def test_a_dropped_connection_is_reported(api: FakeAPI) -> None:
    api.route(PATH, Canned(drop=True))
    message = await failure(brave(api))
    assert message.startswith("search failed: could not reach Brave Search at")
    assert "RemoteProtocolError" in message


# -- rate limits ---------------------------------------------------------------------------------


async def test_429_waits_for_the_per_second_window_then_succeeds(api: FakeAPI) -> None:
    api.route(PATH, rate_limited("0, 1712", "0, 1419704"), Canned(body=SAMPLE))
    started = time.monotonic()
    out = await search(brave(api, retry_wait_min=0.05))
    assert time.monotonic() - started >= 0.05
    assert len(out["results"]) == 11
    assert len(api.requests) == 2


async def test_429_honours_retry_after(api: FakeAPI) -> None:
    api.route(
        PATH,
        rate_limited("0, 1712", "0, 1419704", **{"Retry-After": "0.15"}),
        Canned(body=SAMPLE),
    )
    started = time.monotonic()
    await search(brave(api, retry_wait_min=0.0))
    assert time.monotonic() - started >= 0.15
    assert len(api.requests) == 2


async def test_429_with_a_reset_beyond_the_longest_wait_fails_at_once(api: FakeAPI) -> None:
    headers = RATE_LIMITED["headers"]  # the fixture: the per-second window resets in 1 s
    api.route(PATH, Canned(429, RATE_LIMITED["body"], headers=headers), Canned(body=SAMPLE))
    message = await failure(brave(api, retry_wait_max=0.5))
    assert message == (
        "search failed: rate limited by Brave Search (HTTP 429 RATE_LIMITED: Request rate "
        "limit exceeded for plan.); the limit resets in 1 s"
    )
    assert len(api.requests) == 1  # no wait, no retry (the retry would have succeeded)


@pytest.mark.parametrize(
    ("retry_after", "said"), [("600", "10 min"), ("7200", "2 h"), ("86400", "24 h")]
)
async def test_429_asking_for_a_long_wait_says_how_long(
    api: FakeAPI, retry_after: str, said: str
) -> None:
    api.route(PATH, rate_limited("0, 5", "1, 100", **{"Retry-After": retry_after}))
    message = await failure(brave(api))
    assert message.endswith(f"the limit resets in {said}")
    assert len(api.requests) == 1


async def test_429_with_the_monthly_quota_used_up_fails_at_once(api: FakeAPI) -> None:
    api.route(PATH, rate_limited("1, 0", "1, 1419704"), Canned(body=SAMPLE))
    message = await failure(brave(api))
    assert message == (
        "search failed: the Brave Search quota is used up (HTTP 429 RATE_LIMITED: Request "
        "rate limit exceeded for plan.); it resets in 16 days"
    )
    assert len(api.requests) == 1


async def test_429_gives_up_after_max_retries(api: FakeAPI) -> None:
    api.route(PATH, rate_limited("0, 5", "0, 100"))
    message = await failure(brave(api, max_retries=1))
    assert message.endswith("still after 2 attempts")
    assert len(api.requests) == 2


async def test_429_without_headers_waits_the_minimum(api: FakeAPI) -> None:
    api.route(PATH, Canned(429, "slow down", "text/plain"), Canned(body=SAMPLE))
    await search(brave(api, retry_wait_min=0.02))
    assert len(api.requests) == 2


async def test_unreadable_rate_limit_headers_count_as_absent(api: FakeAPI) -> None:
    api.route(PATH, rate_limited("soon", "later"), Canned(body=SAMPLE))
    await search(brave(api))
    assert len(api.requests) == 2


# -- arguments and configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        ({}, "query: Field required"),
        ({"query": "   "}, "query: must not be empty"),
        ({"query": 42}, "query: Input should be a valid string"),
        ({"query": "x" * 401}, "query: at most 400 characters (got 401); shorten it"),
        ({"query": "w " * 51}, "query: at most 50 words (got 51); shorten it"),
        ({"query": "q", "count": 3}, "count: Extra inputs are not permitted"),
    ],
)
async def test_bad_arguments_are_rejected_before_any_request(
    api: FakeAPI, arguments: dict[str, Any], detail: str
) -> None:
    tool = brave(api)
    with pytest.raises(ToolArgumentsError) as info:
        await tool.call(arguments, ctx())
    assert info.value.details.startswith(detail)
    assert api.requests == []


def test_a_missing_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAVE_SEARCH_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="set the BRAVE_SEARCH_API_KEY environment variable"):
        BraveSearch()
    monkeypatch.setenv("BRAVE_SEARCH_API_KEY", "  ")
    with pytest.raises(ConfigError, match="BRAVE_SEARCH_API_KEY"):
        BraveSearch()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "count must be 1 to 20"),
        ({"count": 21}, "count must be 1 to 20"),
        ({"safesearch": "high"}, "safesearch must be one of off, moderate, strict"),
        ({"freshness": "yesterday"}, "freshness must be pd, pw, pm, py or YYYY-MM-DDtoYYYY-MM-DD"),
        ({"max_retries": -1}, "max_retries must be 0 or more"),
        ({"max_output_chars": 999}, "max_output_chars must be at least 1000"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"retry_wait_min": 2.0, "retry_wait_max": 1.0}, "retry_wait_min <= retry_wait_max"),
        ({"base_url": "api.search.brave.com"}, "base_url must start with http"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BraveSearch("k", **options)


def test_valid_options_and_the_call_budget() -> None:
    tool = BraveSearch("k", freshness="2024-01-01to2024-06-30", count=20, safesearch="off")
    assert tool.definition.name == "brave_search"
    assert tool.definition.is_builtin
    assert tool.timeout == pytest.approx(10 * 3 + 5 * 1.1 * 2 + 1)
    assert repr(tool) == "BraveSearch('https://api.search.brave.com/res/v1/web/search')"


# -- what the model reads ------------------------------------------------------------------------


async def test_the_executor_reports_failures_to_the_model(api: FakeAPI) -> None:
    api.route(PATH, Canned(500, ""))
    tool = brave(api)
    call = ToolCall(call_id="c", tool_name="brave_search", arguments={"query": "q"})
    response = await ToolExecutor([tool]).run_one(call)
    assert response.error is ToolErrorKind.exception
    assert response.content == (
        "Tool 'brave_search' failed: SearchError: search failed: Brave Search is unavailable "
        "(HTTP 500)"
    )
    api.route(PATH, Canned(body={"web": {"results": []}}))
    response = await ToolExecutor([tool]).run_one(call)
    await tool.aclose()
    assert response.error is ToolErrorKind.retry
    assert response.content == "search failed: no results for 'q'; try other or fewer words"


def test_json_that_cannot_shrink_further_comes_back_whole() -> None:
    query = '"' * 400  # 800 characters once escaped in JSON
    items = [{"type": "faq", "question": "q" * 24, "answer": "a" * 24, "title": "t" * 24}] * 3
    text = fit_json(lambda found: {"query": query, "results": found}, items, 820)
    out = json.loads(text)  # over the cap, but whole: the executor's visible cut takes over
    assert len(text) > 820
    assert out["results"] == items[:1]
