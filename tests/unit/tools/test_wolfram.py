"""WolframAlpha against a real HTTP server on loopback answering in Wolfram|Alpha's reply shapes.

Full Results mode goes through the ``wolframalpha`` package's own HTTP client, so these tests
also pin down how the package behaves on each reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fake_apis import XML, Canned, FakeAPI, fixture, fixture_json, refused_url

from agentic.errors import ConfigError, SearchError, ToolArgumentsError
from agentic.tools import ToolContext, ToolErrorKind, ToolExecutor, ToolRetry
from agentic.tools.wolfram import WolframAlpha
from agentic.types import ToolCall

FULL = "/v2/query"
LLM = "/api/v1/llm-api"
SAMPLE = fixture("wolfram_sample.xml")
INVALID_APPID = fixture("wolfram_error_invalid_appid.xml")
NO_RESULT = fixture("wolfram_no_result.xml")
ERRORS = fixture_json("wolfram_errors.json")
QUERY = "solve x^2 - 5x + 6 = 0"


def ctx(query: str = QUERY) -> ToolContext[None]:
    call = ToolCall(call_id="c1", tool_name="wolfram_alpha", arguments={"query": query})
    return ToolContext(deps=None, session_id="s", turn_id="t", call=call)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as server:
        server.route(FULL, Canned(body=SAMPLE, content_type=XML))
        server.route(
            LLM, Canned(body=fixture("wolfram_llm_api_sample.txt"), content_type="text/plain")
        )
        yield server


def wolfram(api: FakeAPI | str, **kwargs: Any) -> WolframAlpha:
    base = api if isinstance(api, str) else api.base_url
    return WolframAlpha("test-app-id", base_url=base + FULL, llm_api_url=base + LLM, **kwargs)


async def ask(tool: WolframAlpha, query: str = QUERY) -> str:
    try:
        return await tool.call({"query": query}, ctx(query))
    finally:
        await tool.aclose()


async def failure(tool: WolframAlpha, query: str = QUERY) -> str:
    with pytest.raises(SearchError) as info:
        await ask(tool, query)
    return str(info.value)


def xml_variant(**replace: str) -> bytes:
    """The sample reply with some text replaced."""
    text = SAMPLE.decode()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text.encode()


# -- Full Results --------------------------------------------------------------------------------


async def test_full_results_keep_every_subpod_up_to_the_primary_pod(api: FakeAPI) -> None:
    out = json.loads(await ask(wolfram(api)))
    assert out == {
        "queryresult": {
            "success": True,
            "inputstring": QUERY,
            "pods": [
                {
                    "title": "Input interpretation",
                    "subpods": [{"title": "", "plaintext": "solve x^2 - 5 x + 6 = 0"}],
                },
                {
                    "title": "Results",
                    "primary": True,
                    "subpods": [
                        {"title": "", "plaintext": "x = 2"},
                        {"title": "", "plaintext": "x = 3"},
                    ],
                },
            ],
        }
    }


async def test_full_results_request_plaintext_in_the_configured_units(api: FakeAPI) -> None:
    await ask(wolfram(api, units="imperial"))
    (seen,) = api.requests
    assert seen.path == FULL
    assert {k: v[0] for k, v in seen.query.items()} == {
        "appid": "test-app-id",
        "input": QUERY,
        "format": "plaintext",
        "reinterpret": "true",
        "units": "imperial",
    }


async def test_without_a_primary_pod_every_text_pod_is_kept(api: FakeAPI) -> None:
    api.route(FULL, Canned(body=xml_variant(**{"primary='true'": ""}), content_type=XML))
    out = json.loads(await ask(wolfram(api)))
    pods = out["queryresult"]["pods"]
    assert [p["title"] for p in pods] == [
        "Input interpretation",
        "Results",
        "Sum of roots",
        "Product of roots",
    ]  # the plot pods have no text and are left out
    assert all("primary" not in p for p in pods)


async def test_an_answer_with_only_images_asks_the_model_to_rephrase(api: FakeAPI) -> None:
    body = xml_variant(
        **{
            "<plaintext>solve x^2 - 5 x + 6 = 0</plaintext>": "<plaintext></plaintext>",
            "<plaintext>x = 2</plaintext>": "<plaintext />",
            "<plaintext>x = 3</plaintext>": "<plaintext>  </plaintext>",
            "<plaintext>5</plaintext>": "<plaintext></plaintext>",
            "<plaintext>6</plaintext>": "<plaintext></plaintext>",
        }
    )
    api.route(FULL, Canned(body=body, content_type=XML))
    with pytest.raises(ToolRetry, match="understood 'solve x\\^2 - 5x \\+ 6 = 0' but has no text"):
        await ask(wolfram(api))


async def test_a_big_answer_is_fitted_keeping_the_primary_pod(api: FakeAPI) -> None:
    big = "digits " * 400
    body = xml_variant(
        **{"<plaintext>solve x^2 - 5 x + 6 = 0</plaintext>": f"<plaintext>{big}</plaintext>"}
    )
    api.route(FULL, Canned(body=body, content_type=XML))
    text = await ask(wolfram(api, max_output_chars=600))
    assert len(text) <= 600
    pods = json.loads(text)["queryresult"]["pods"]
    assert pods == [
        {
            "title": "Results",
            "primary": True,
            "subpods": [{"title": "", "plaintext": "x = 2"}, {"title": "", "plaintext": "x = 3"}],
        }
    ]


async def test_an_invalid_app_id_is_a_clear_error(api: FakeAPI) -> None:
    api.route(FULL, Canned(body=INVALID_APPID, content_type=XML))
    message = await failure(wolfram(api))
    assert message == "invalid Wolfram|Alpha app id (Invalid appid); set WOLFRAM_ALPHA_APP_ID"


async def test_other_api_errors_keep_their_code_and_message(api: FakeAPI) -> None:
    body = INVALID_APPID.replace(b"<code>1</code>", b"<code>1000</code>").replace(
        b"Invalid appid", b"Query too complex"
    )
    api.route(FULL, Canned(body=body, content_type=XML))
    assert await failure(wolfram(api)) == "Wolfram|Alpha error 1000: Query too complex"


async def test_no_result_asks_to_rephrase_with_the_suggestions(api: FakeAPI) -> None:
    api.route(FULL, Canned(body=NO_RESULT, content_type=XML))
    with pytest.raises(ToolRetry) as info:
        await ask(wolfram(api), "sourdogh startr rise tiem")
    assert info.value.message == (
        "Wolfram|Alpha could not interpret the query 'sourdogh startr rise tiem'. Did you mean: "
        "'sourdough starter'? Tip: Check your spelling, and use English Rephrase it (short "
        "English keywords work best)."
    )


async def test_no_result_lists_several_suggestions_or_none(api: FakeAPI) -> None:
    two = NO_RESULT.replace(
        b"<didyoumean score='0.41' level='medium'>sourdough starter</didyoumean>",
        b"<didyoumean score='0.4' level='medium'>sourdough starter</didyoumean>"
        b"<didyoumean>sourdough rise time</didyoumean>",
    )
    api.route(FULL, Canned(body=two, content_type=XML))
    with pytest.raises(ToolRetry, match="Did you mean: 'sourdough starter', 'sourdough rise time'"):
        await ask(wolfram(api))
    bare = b"<?xml version='1.0'?><queryresult success='false' error='false' numpods='0' />"
    api.route(FULL, Canned(body=bare, content_type=XML))
    with pytest.raises(ToolRetry) as info:
        await ask(wolfram(api), "zzqx")
    assert info.value.message == (
        "Wolfram|Alpha could not interpret the query 'zzqx'. Rephrase it (short English "
        "keywords work best)."
    )


async def test_an_html_503_reports_the_status_the_package_hides(api: FakeAPI) -> None:
    page = "<html><head><title>503</title></head><body><h1>Service Unavailable</h1></body></html>"
    api.route(FULL, Canned(503, page, "text/html; charset=utf-8"))
    message = await failure(wolfram(api))
    assert message == (
        "Wolfram|Alpha is unavailable: HTTP 503 (text/html; charset=utf-8) instead of Full "
        "Results XML: 503 Service Unavailable"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Canned(200, {"queryresult": {"success": True}}),
            "Wolfram|Alpha sent an unexpected reply: HTTP 200 (application/json) instead of "
            'Full Results XML: {"queryresult": {"success": true}}',
        ),
        (
            Canned(200, "<queryresult success='true'><pod", XML),
            "Wolfram|Alpha sent an unexpected reply: HTTP 200 (text/xml; charset=utf-8) "
            "instead of Full Results XML:",
        ),
        (
            Canned(403, "<html><body>Forbidden</body></html>", XML),
            "Wolfram|Alpha sent an unexpected reply: HTTP 403 (text/xml; charset=utf-8) "
            "instead of Full Results XML: Forbidden",
        ),
        (
            Canned(200, "<?xml version='1.0'?><queryresult success='maybe' />", XML),
            "Wolfram|Alpha sent an unexpected reply: HTTP 200 (text/xml; charset=utf-8) "
            "instead of Full Results XML:",
        ),
    ],
    ids=["json", "broken-xml", "403-not-queryresult", "bad-attribute"],
)
async def test_replies_the_package_cannot_read_are_reported(
    api: FakeAPI, reply: Canned, expected: str
) -> None:
    api.route(FULL, reply)
    assert (await failure(wolfram(api))).startswith(expected)


def test_without_the_package_frame_the_status_is_reported_unknown() -> None:
    from agentic.tools.wolfram import _unexpected_reply

    assert str(_unexpected_reply(AssertionError())) == (
        "Wolfram|Alpha sent a reply that is not Full Results XML (AssertionError; HTTP status "
        "unknown: the wolframalpha package does not report it)"
    )


async def test_a_slow_full_results_query_times_out(api: FakeAPI) -> None:
    api.route(FULL, Canned(body=SAMPLE, content_type=XML, delay=3))
    started = time.monotonic()
    message = await failure(wolfram(api, timeout=0.1))
    assert message == "Wolfram|Alpha timed out after 0.1s; try a simpler query"
    assert time.monotonic() - started < 2  # the server would have taken 3 s


async def test_an_unreachable_full_results_api_is_reported() -> None:
    base = refused_url()
    message = await failure(wolfram(base))
    assert message.startswith(f"could not reach Wolfram|Alpha at {base}{FULL} (ConnectError")


# -- LLM API -------------------------------------------------------------------------------------


async def test_llm_api_text_is_passed_through(api: FakeAPI) -> None:
    text = await ask(wolfram(api, mode="llm_api", max_output_chars=3000))
    assert text == fixture("wolfram_llm_api_sample.txt").decode().strip()
    (seen,) = api.requests
    assert seen.path == LLM
    assert {k: v[0] for k, v in seen.query.items()} == {
        "input": QUERY,
        "appid": "test-app-id",
        "maxchars": "3000",
        "units": "metric",
    }


async def test_llm_api_not_understood_asks_to_rephrase_with_its_suggestions(api: FakeAPI) -> None:
    reply = ERRORS["llm_api_not_understood"]
    api.route(LLM, Canned(reply["status"], reply["body"], "text/plain"))
    with pytest.raises(ToolRetry) as info:
        await ask(wolfram(api, mode="llm_api"), "sourdogh startr rise tiem")
    assert info.value.message == (
        "Wolfram|Alpha could not interpret the query 'sourdogh startr rise tiem'; rephrase it. "
        "Its reply: Wolfram|Alpha could not understand: sourdogh startr rise tiem.\n"
        "Things to try instead:\nsourdough starter"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Canned(403, ERRORS["llm_api_invalid_appid"]["body"], "text/plain"),
            "invalid Wolfram|Alpha app id (HTTP 403: Error 1: Invalid appid); set "
            "WOLFRAM_ALPHA_APP_ID to an LLM API app id",
        ),
        (
            Canned(400, "No input.", "text/plain"),
            "Wolfram|Alpha rejected the request (HTTP 400: No input.)",
        ),
        (Canned(502, "", "text/plain"), "Wolfram|Alpha is unavailable (HTTP 502)"),
        (Canned(200, "  \n", "text/plain"), "Wolfram|Alpha sent an empty answer"),
        (
            Canned(200, "<html><body>Sign in</body></html>", "text/html"),
            "Wolfram|Alpha sent an HTML page: Sign in",
        ),
    ],
    ids=["403", "400", "502", "empty", "html"],
)
async def test_llm_api_failures_are_clear_errors(
    api: FakeAPI, reply: Canned, expected: str
) -> None:
    api.route(LLM, reply)
    assert await failure(wolfram(api, mode="llm_api")) == expected


async def test_llm_api_timeout_and_refused_connection() -> None:
    with FakeAPI() as api:
        api.route(LLM, Canned(body="late", content_type="text/plain", delay=3))
        message = await failure(wolfram(api, mode="llm_api", timeout=0.1))
    assert message == "Wolfram|Alpha timed out after 0.1s; try a simpler query"
    base = refused_url()
    message = await failure(wolfram(base, mode="llm_api"))
    assert message.startswith(f"could not reach Wolfram|Alpha at {base}{LLM} (ConnectError")


async def test_llm_api_uses_an_injected_client_and_leaves_it_open(api: FakeAPI) -> None:
    async with httpx2.AsyncClient() as client:
        async with wolfram(api, mode="llm_api", client=client) as tool:
            assert (await tool.call({"query": "2+2"}, ctx("2+2"))).startswith("Query:")
        assert not client.is_closed


# -- arguments, configuration, the executor ------------------------------------------------------


async def test_an_empty_query_is_rejected_before_any_request(api: FakeAPI) -> None:
    with pytest.raises(ToolArgumentsError, match="query: must not be empty"):
        await ask(wolfram(api), "  ")
    assert api.requests == []


def test_a_missing_app_id_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WOLFRAM_ALPHA_APP_ID", raising=False)
    with pytest.raises(ConfigError, match="set the WOLFRAM_ALPHA_APP_ID environment variable"):
        WolframAlpha()
    monkeypatch.setenv("WOLFRAM_ALPHA_APP_ID", "from-env")
    assert WolframAlpha().definition.name == "wolfram_alpha"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "short"}, "mode must be 'full' or 'llm_api'"),
        ({"units": "si"}, "units must be 'metric' or 'imperial'"),
        ({"base_url": "api.wolframalpha.com/v2/query"}, "base_url must start with http"),
        ({"llm_api_url": "ftp://x"}, "llm_api_url must start with http"),
        ({"max_output_chars": 10}, "max_output_chars must be at least 500"),
        ({"timeout": -1}, "timeout must be a positive number"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WolframAlpha("id", **options)


def test_defaults() -> None:
    tool = WolframAlpha("id")
    assert tool.definition.is_builtin
    assert tool.timeout == 25.0
    assert repr(tool) == "WolframAlpha('https://api.wolframalpha.com/v2/query', mode='full')"
    assert "llm-api" in repr(WolframAlpha("id", mode="llm_api"))


async def test_the_executor_reports_failures_to_the_model(api: FakeAPI) -> None:
    api.route(FULL, Canned(body=INVALID_APPID, content_type=XML))
    tool = wolfram(api)
    call = ToolCall(call_id="c", tool_name="wolfram_alpha", arguments={"query": "pi"})
    response = await ToolExecutor([tool]).run_one(call)
    assert response.error is ToolErrorKind.exception
    assert response.content == (
        "Tool 'wolfram_alpha' failed: SearchError: invalid Wolfram|Alpha app id (Invalid appid); "
        "set WOLFRAM_ALPHA_APP_ID"
    )
