"""GenAI spans as model calls and runs, and the once-per-chain pricing rule (no database)."""

from datetime import timedelta

from analytics.services.genai_spans import StoredCall, calls_to_price, export_read
from tests.analytics.otlp_factories import (
    OTHER_TRACE,
    T0,
    TRACE,
    agent,
    chat,
    export,
    span,
)

NOW = T0 + timedelta(minutes=1)
A, B, C, D = "00f067aa0ba902b7", "1111111111111111", "2222222222222222", "3333333333333333"


def read(*spans, resource=None):
    return export_read(export(*spans, resource=resource), received_at=NOW)


def reasons(items) -> dict[str, str]:
    return {item.location.rsplit(".", 1)[1]: item.reason for item in items}


# --- mapping ----------------------------------------------------------------------------------


def test_chat_span_becomes_a_call_with_the_conventions_attributes():
    # given
    message = chat(
        A,
        parent=B,
        end=T0 + timedelta(seconds=3),
        gen_ai__response__model="gpt-4o-2024-08-06",
        gen_ai__usage__cache_read__input_tokens=400,
        gen_ai__usage__cache_creation__input_tokens=100,
        user__id="u-42",
        costwise__feature_tag="search",
        some__unknown__attribute="ignored",
    )
    # when
    result = read(message)
    # then
    (call,) = result.calls
    assert call.trace_id == TRACE and call.span_id == A and call.parent_span_id == B
    assert call.model == "gpt-4o-2024-08-06"  # the response model is the one billed
    assert call.provider == "openai"
    assert (call.input_tokens, call.output_tokens) == (1000, 200)
    assert (call.cache_read_tokens, call.cache_write_tokens) == (400, 100)
    assert (call.user_id, call.feature_tag) == ("u-42", "search")
    assert call.ended_at == T0 + timedelta(seconds=3)
    assert call.idempotency_key == TRACE + A + B
    assert result.rejected == [] and result.agents == []


def test_older_attribute_names_are_read():
    # given
    message = span(
        A,
        llm__request__type="chat",
        gen_ai__system="anthropic",
        gen_ai__request__model="claude-3-5-sonnet",
        gen_ai__usage__prompt_tokens=50,
        gen_ai__usage__completion_tokens=7,
        gen_ai__usage__cache_read_input_tokens=20,
        enduser__id="old-user",
    )
    # when
    (call,) = read(message).calls
    # then
    assert (call.model, call.provider) == ("claude-3-5-sonnet", "anthropic")
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (50, 7, 20)
    assert call.user_id == "old-user"
    assert call.idempotency_key == TRACE + A + "0" * 16


def test_input_tokens_without_the_cache_get_the_cache_added():
    # given: Anthropic's usage passed on as is (input excludes cached tokens)
    message = chat(
        A,
        input_tokens=10,
        gen_ai__usage__cache_read__input_tokens=900,
        gen_ai__usage__cache_creation__input_tokens=90,
    )
    # when
    (call,) = read(message).calls
    # then
    assert (call.input_tokens, call.cache_read_tokens, call.cache_write_tokens) == (1000, 900, 90)


def test_resource_attributes_fill_in_user_and_feature_and_span_wins():
    # given
    resource = {"user.id": "svc-user", "costwise.feature_tag": "batch", "service.name": "svc"}
    # when
    result = read(chat(A), chat(B, user__id="own"), resource=resource)
    # then
    users = {call.span_id: call.user_id for call in result.calls}
    assert users == {A: "svc-user", B: "own"}
    assert {call.feature_tag for call in result.calls} == {"batch"}


def test_agent_span_becomes_a_run_with_status_tokens_and_times():
    # given
    message = agent(
        A,
        start=T0,
        end=T0 + timedelta(seconds=42),
        error="tool crashed",
        gen_ai__usage__input_tokens=3000,
        gen_ai__usage__output_tokens=500,
    )
    # when
    (run,) = read(message).agents
    # then
    assert run.run_id == f"{TRACE}-{A}"
    assert (run.worker_id, run.failed, run.error) == ("planner", True, "tool crashed")
    assert (run.total_tokens, run.latency_ms) == (3500, 42_000)
    assert (run.started_at, run.ended_at) == (T0, T0 + timedelta(seconds=42))


def test_agent_without_a_name_is_the_service():
    # given
    message = span(A, gen_ai__operation__name="invoke_agent")
    # when
    (run,) = read(message, resource={"service.name": "billing-bot"}).agents
    # then
    assert run.worker_id == "billing-bot" and run.total_tokens is None and not run.failed


def test_spans_that_are_not_genai_are_ignored_but_kept_as_links():
    # given
    plain = span(A, http__method="GET")
    tool = span(B, parent=A, gen_ai__operation__name="execute_tool")
    # when
    result = read(plain, tool, chat(C, parent=B))
    # then
    assert [call.span_id for call in result.calls] == [C]
    assert result.rejected == [] and result.span_count == 3
    assert result.parents == {(TRACE, A): None, (TRACE, B): A, (TRACE, C): B}


def test_malformed_genai_spans_are_rejected_one_by_one_naming_the_attribute():
    # given
    spans = [
        chat(A, input_tokens="12"),
        chat(B, output_tokens=-1),
        span(C, gen_ai__operation__name="chat", gen_ai__usage__input_tokens=5),
        chat(D, model="m" * 65),
        chat("4444444444444444", end=NOW + timedelta(minutes=6)),
        chat("5555555555555555", input_tokens=1.5),
        chat("6666666666666666", gen_ai__request__model=7),
        chat("7777777777777777", input_tokens=10**12),
        chat("8888888888888888"),  # fine
        span("9999999999999999", gen_ai__operation__name="invoke_agent"),
    ]
    no_end = chat("aaaaaaaaaaaaaaaa")
    no_end.end_time_unix_nano = 0
    # when
    result = read(*spans, no_end)
    # then
    assert [call.span_id for call in result.calls] == ["8888888888888888"]
    assert reasons(result.rejected) == {
        "spans[0]": "gen_ai.usage.input_tokens must be an integer",
        "spans[1]": "gen_ai.usage.output_tokens must be greater than or equal to 0",
        "spans[2]": "gen_ai.request.model or gen_ai.response.model is required",
        "spans[3]": "gen_ai.request.model must be at most 64 characters",
        "spans[4]": "endTimeUnixNano must not be later than receipt time + 5 minutes",
        "spans[5]": "gen_ai.usage.input_tokens must be an integer",
        "spans[6]": "gen_ai.request.model must be a string",
        "spans[7]": "gen_ai.usage.input_tokens must be less than or equal to 1000000000",
        "spans[9]": "gen_ai.agent.name (or resource service.name) is required",
        "spans[10]": "endTimeUnixNano is required",
    }


def test_bad_ids_and_times_are_rejected():
    # given
    zero_trace = chat(A)
    zero_trace.trace_id = bytes(16)
    short_span = chat(B)
    short_span.span_id = b"\x01\x02"
    ancient = chat(C, end=T0.replace(year=1999))
    far = chat(D)
    far.end_time_unix_nano = 2**64 - 1
    backwards = agent("4444444444444444", start=T0 + timedelta(seconds=5), end=T0)
    # when
    result = read(
        zero_trace,
        short_span,
        ancient,
        far,
        backwards,
    )
    # then
    assert result.calls == [] and result.agents == []
    assert reasons(result.rejected) == {
        "spans[0]": "traceId must be 16 bytes, not all zero",
        "spans[1]": "spanId must be 8 bytes, not all zero",
        "spans[2]": "endTimeUnixNano must be between 2000-01-01 and 2099-12-31 (UTC)",
        "spans[3]": "endTimeUnixNano must be between 2000-01-01 and 2099-12-31 (UTC)",
        "spans[4]": "startTimeUnixNano must not be later than endTimeUnixNano",
    }


# --- once per chain ---------------------------------------------------------------------------


def priced_ids(*spans, stored=()):
    result = read(*spans)
    selection = calls_to_price(result, stored)
    return [call.span_id for call in selection.priced], selection


def test_wrapper_chat_around_provider_chat_in_one_export_prices_the_inner_one():
    # given: agent -> framework chat -> provider chat, all with the same usage
    spans = [agent(A), chat(B, parent=A), chat(C, parent=B)]
    # when
    priced, selection = priced_ids(*spans)
    # then
    assert priced == [C]
    assert [call.span_id for call in selection.wrappers] == [B]


def test_inner_call_through_a_plain_span_still_makes_the_outer_a_wrapper():
    # given: chat -> http span -> chat
    spans = [chat(A), span(B, parent=A, http__method="POST"), chat(C, parent=B)]
    # when
    priced, _ = priced_ids(*spans)
    # then
    assert priced == [C]


def test_sibling_calls_are_both_priced():
    # when
    priced, _ = priced_ids(agent(A), chat(B, parent=A), chat(C, parent=A))
    # then
    assert priced == [B, C]


def test_outer_call_arriving_after_its_inner_call_was_stored_is_not_priced():
    # given: the inner call C (parent B) was recorded by an earlier export
    stored = [StoredCall(TRACE, C, B)]
    # when
    priced, selection = priced_ids(chat(B, parent=A), stored=stored)
    # then
    assert priced == []
    assert [call.span_id for call in selection.wrappers] == [B]


def test_inner_call_arriving_after_its_outer_call_was_stored_is_not_priced():
    # given: the outer call B was recorded first (sent by another process)
    stored = [StoredCall(TRACE, B, A)]
    # when
    priced, _ = priced_ids(chat(C, parent=B), chat(D, parent=C), stored=stored)
    # then
    assert priced == []


def test_stored_call_of_another_trace_changes_nothing():
    # when
    priced, _ = priced_ids(chat(B, parent=A), stored=[StoredCall(OTHER_TRACE, C, B)])
    # then
    assert priced == [B]


def test_call_sent_again_is_priced_again_for_the_key_to_find_it():
    # when: C was stored before and comes again with its wrapper
    priced, _ = priced_ids(chat(B), chat(C, parent=B), stored=[StoredCall(TRACE, C, B)])
    # then
    assert priced == [C]


def test_call_without_usage_is_rejected_unless_another_call_stands_for_it():
    # given: B wraps C (which has usage); D stands alone without usage
    spans = [
        chat(B, input_tokens=None, output_tokens=None),
        chat(C, parent=B),
        chat(D, input_tokens=None, output_tokens=None),
    ]
    # when
    priced, selection = priced_ids(*spans)
    # then
    assert priced == [C]
    assert [call.span_id for call in selection.wrappers] == [B]
    assert reasons(selection.rejected) == {
        "spans[2]": "model call without token counts (gen_ai.usage.input_tokens, "
        "gen_ai.usage.output_tokens); not recorded"
    }


def test_wrapper_with_usage_around_a_call_without_usage_is_priced():
    # when
    priced, selection = priced_ids(
        chat(B), chat(C, parent=B, input_tokens=None, output_tokens=None)
    )
    # then
    assert priced == [B]
    assert [call.span_id for call in selection.wrappers] == [C]


def test_parent_links_forming_a_cycle_end():
    # given: B's parent is C and C's parent is B
    # when
    priced, selection = priced_ids(chat(B, parent=C), chat(C, parent=B))
    # then: each lies below the other; neither is priced twice, nothing hangs
    assert priced == []
    assert len(selection.wrappers) == 2


def test_agent_usage_is_never_priced():
    # when
    priced, _ = priced_ids(agent(A, gen_ai__usage__input_tokens=999), chat(B, parent=A))
    # then
    assert priced == [B]


def test_span_ids_sent_again_under_another_parent_are_not_a_second_call():
    # given: C was stored under parent B; the export repeats D under two parents
    stored = [StoredCall(TRACE, C, B)]
    # when
    priced, selection = priced_ids(chat(C, parent=A), chat(D), chat(D, parent=A), stored=stored)
    # then
    assert priced == [D]
    assert reasons(selection.rejected) == {
        "spans[0]": "the span was sent before with another parentSpanId; not recorded again",
        "spans[2]": "the span was sent before with another parentSpanId; not recorded again",
    }


def test_a_long_chain_of_nested_calls_prices_the_innermost_once():
    # given: 3000 chat spans, each the parent of the next, the outermost under a stored call
    ids = [f"{n:016x}" for n in range(1, 3001)]
    spans = [chat(ids[0], parent="f" * 16)]
    spans += [chat(child, parent=parent) for parent, child in zip(ids, ids[1:], strict=False)]
    # when
    priced, selection = priced_ids(*spans)
    priced_under_stored, _ = priced_ids(*spans, stored=[StoredCall(TRACE, "f" * 16, None)])
    # then
    assert priced == [ids[-1]] and len(selection.wrappers) == 2999
    assert priced_under_stored == []
