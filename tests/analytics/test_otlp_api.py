"""POST /v1/traces through the API client: encodings, pricing once per chain, idempotency,
partial success, bad input and tenant isolation."""

import gzip
import json
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from analytics.models import CostRecord, RunRecord
from tests.analytics.otlp_factories import (
    T0,
    TRACE,
    agent,
    chat,
    export,
    otlp_json,
    span,
)
from tests.factories import FeatureTagFactory, RunRecordFactory

pytestmark = pytest.mark.django_db

URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"
NOW = T0 + timedelta(minutes=1)
A, B, C, D = "00f067aa0ba902b7", "1111111111111111", "2222222222222222", "3333333333333333"


def post_protobuf(client, message, **headers):
    return client.generic("POST", URL, message.SerializeToString(), PROTOBUF, **headers)


def post_json(client, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.generic("POST", URL, data, "application/json", **headers)


def partial_success(response) -> tuple[int, str]:
    assert response.status_code == 200, response.content
    if response["Content-Type"] == PROTOBUF:
        answer = ExportTraceServiceResponse.FromString(response.content)
        return answer.partial_success.rejected_spans, answer.partial_success.error_message
    body = response.json().get("partialSuccess", {})
    return int(body.get("rejectedSpans", 0)), body.get("errorMessage", "")


def stored(tenant) -> list[CostRecord]:
    return list(CostRecord.objects.filter(tenant=tenant).order_by("idempotency_key"))


def error(response) -> tuple[int, str]:
    assert response["Content-Type"].startswith("application/json")
    return response.status_code, response.json()["error"]


# --- protobuf ---------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_agent_with_a_wrapped_chat_records_one_priced_call_and_one_run(api_client, tenant):
    # given: agent -> framework chat -> provider chat; both chats report the same usage
    message = export(
        chat(C, parent=B, end=T0 + timedelta(seconds=2), user__id="u-1"),
        chat(B, parent=A, end=T0 + timedelta(seconds=3)),
        agent(A, end=T0 + timedelta(seconds=4), gen_ai__usage__input_tokens=1000),
        span(D, parent=A, name="db query"),
        resource={"service.name": "support-bot", "costwise.feature_tag": "support"},
    )
    FeatureTagFactory(tenant=tenant, tag="support")
    # when
    response = post_protobuf(api_client, message)
    # then
    assert response["Content-Type"] == PROTOBUF
    assert partial_success(response) == (0, "")
    (record,) = stored(tenant)
    assert record.idempotency_key == TRACE + C + B
    assert (record.request_id, record.run_id) == (TRACE, TRACE)
    assert (record.model, record.provider) == ("gpt-4o", "openai")
    assert (record.input_tokens, record.output_tokens) == (1000, 200)
    assert (record.user_id, record.feature_tag) == ("u-1", "support")
    assert record.created_at == T0 + timedelta(seconds=2)
    assert record.cost_source == "catalog" and record.cost_cents > 0
    (run,) = RunRecord.objects.filter(tenant=tenant)
    assert run.run_id == f"{TRACE}-{A}" and run.parent_run_id == TRACE
    assert (run.worker_id, run.status, run.success) == ("planner", "completed", True)
    assert (run.total_tokens, run.total_latency_ms) == (1000, 4000)
    assert run.completed_at == T0 + timedelta(seconds=4)


@time_machine.travel(NOW, tick=False)
def test_calls_are_priced_as_the_batch_api_prices_the_same_tokens(api_client, tenant):
    # given
    message = export(chat(A, gen_ai__usage__cache_read__input_tokens=400, end=T0))
    batch = {
        "records": [
            {
                "model": "gpt-4o",
                "provider": "openai",
                "input_tokens": 1000,
                "output_tokens": 200,
                "cache_read_tokens": 400,
                "created_at": T0.isoformat(),
                "idempotency_key": "batch-1",
            }
        ]
    }
    # when
    post_protobuf(api_client, message)
    api_client.post("/api/v1/cost-records/", batch, format="json")
    # then
    otlp, batched = stored(tenant)
    assert otlp.idempotency_key.startswith(TRACE) and batched.idempotency_key == "batch-1"
    assert otlp.cost_cents == batched.cost_cents and otlp.cost_source == batched.cost_source
    assert otlp.cache_read_tokens == 400


@time_machine.travel(NOW, tick=False)
def test_exporting_the_same_spans_again_adds_nothing(api_client, tenant):
    # given
    message = export(agent(A), chat(B, parent=A), chat(C, parent=A, model="gpt-4o-mini"))
    post_protobuf(api_client, message)
    before = [(r.pk, r.cost_cents) for r in stored(tenant)]
    # when
    response = post_protobuf(api_client, message)
    # then
    assert partial_success(response) == (0, "")
    assert [(r.pk, r.cost_cents) for r in stored(tenant)] == before and len(before) == 2
    assert RunRecord.objects.filter(tenant=tenant).count() == 1


@time_machine.travel(NOW, tick=False)
def test_outer_call_exported_after_its_inner_call_is_not_priced_again(api_client, tenant):
    # given: the SDK ends (and exports) the inner span first
    post_protobuf(api_client, export(chat(C, parent=B)))
    # when
    response = post_protobuf(api_client, export(chat(B, parent=A), agent(A)))
    # then
    assert partial_success(response) == (0, "")
    assert [r.idempotency_key for r in stored(tenant)] == [TRACE + C + B]


@time_machine.travel(NOW, tick=False)
def test_inner_call_exported_after_its_outer_call_is_not_priced_again(api_client, tenant):
    # given: the outer span came first (another process exported it)
    post_protobuf(api_client, export(chat(B, parent=A)))
    # when
    post_protobuf(api_client, export(chat(C, parent=B)))
    post_protobuf(api_client, export(chat(B, parent=A), chat(C, parent=B)))
    # then
    assert [r.idempotency_key for r in stored(tenant)] == [TRACE + B + A]


@time_machine.travel(NOW, tick=False)
def test_unknown_model_is_stored_unpriced_not_free(api_client, tenant):
    # when
    post_protobuf(api_client, export(chat(A, model="in-house-llm-v7", gen_ai__provider__name="x")))
    # then
    (record,) = stored(tenant)
    assert record.cost_source == "unpriced" and record.cost_cents is None


@time_machine.travel(NOW, tick=False)
def test_malformed_spans_are_reported_and_the_rest_recorded(api_client, tenant):
    # given
    message = export(
        chat(A),
        chat(B, input_tokens="many"),
        chat(C, input_tokens=None, output_tokens=None),
        span(D, gen_ai__operation__name="chat", gen_ai__usage__input_tokens=3),
    )
    # when
    response = post_protobuf(api_client, message)
    # then
    rejected, message_text = partial_success(response)
    assert rejected == 3
    assert (
        "resourceSpans[0].scopeSpans[0].spans[1]: gen_ai.usage.input_tokens must be an integer"
        in message_text
    )
    assert "spans[2]: model call without token counts" in message_text
    assert "spans[3]: gen_ai.request.model or gen_ai.response.model is required" in message_text
    assert [r.idempotency_key for r in stored(tenant)] == [TRACE + A + "0" * 16]


@time_machine.travel(NOW, tick=False)
def test_span_sent_again_with_other_attributes_is_rejected_alone(api_client, tenant):
    # given
    post_protobuf(api_client, export(chat(A), agent(B)))
    RunRecordFactory(tenant=tenant, run_id=f"{TRACE}-{D}", status="completed")
    # when
    response = post_protobuf(
        api_client, export(chat(A, input_tokens=5), agent(B, agent_name="other"), agent(D), chat(C))
    )
    # then
    rejected, text = partial_success(response)
    assert rejected == 3
    assert "spans[0]: was recorded before with other attributes" in text
    assert "spans[1]: its run was recorded before" in text and "spans[2]: its run" in text
    assert [r.input_tokens for r in stored(tenant)] == [1000, 1000]  # A as first sent, C new


@time_machine.travel(NOW, tick=False)
def test_failure_while_writing_leaves_nothing_half_written(api_client, tenant):
    # given: the database refuses runs (a trigger), after the calls were inserted
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$;"
            "CREATE TRIGGER refuse BEFORE INSERT ON analytics_runrecord "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"
        )
    # when
    response = post_protobuf(api_client, export(chat(B, parent=A), agent(A)))
    # then
    assert response.status_code == 500
    assert stored(tenant) == []


# --- JSON and gzip ----------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_json_encoding_with_hex_ids_string_integers_and_unknown_fields(api_client, tenant):
    # given: written as the OTLP JSON encoding prescribes
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.instrumentation", "version": "1.0"},
                        "spans": [
                            {
                                "traceId": TRACE.upper(),
                                "spanId": B,
                                "parentSpanId": A,
                                "name": "chat gpt-4o",
                                "kind": 3,
                                "startTimeUnixNano": "1772445600000000000",
                                "endTimeUnixNano": 1772445601000000000,
                                "futureField": {"anything": True},
                                "attributes": [
                                    {
                                        "key": "gen_ai.operation.name",
                                        "value": {"stringValue": "chat"},
                                    },
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "gpt-4o"},
                                    },
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "120"},
                                    },
                                    {
                                        "key": "gen_ai.usage.output_tokens",
                                        "value": {"intValue": 30},
                                    },
                                    {"key": "x.custom", "value": {"arrayValue": {"values": []}}},
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    # when
    response = post_json(api_client, body)
    # then
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}
    (record,) = stored(tenant)
    assert record.idempotency_key == TRACE + B + A
    assert (record.input_tokens, record.output_tokens) == (120, 30)
    assert record.created_at == T0 + timedelta(seconds=1)


def field_errors(response) -> dict[str, str]:
    assert response.status_code == 400, response.content
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


@time_machine.travel(NOW, tick=False)
def test_json_with_an_id_that_is_not_hex_is_refused_naming_it(api_client, tenant):
    # given
    body = otlp_json(export(chat(A), chat(B)))
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["spanId"] = "not-hex!"
    # when
    response = post_json(api_client, body)
    # then
    assert field_errors(response) == {
        "resourceSpans[0].scopeSpans[0].spans[1].spanId": "must be a hex string"
    }
    assert stored(tenant) == []


@time_machine.travel(NOW, tick=False)
def test_json_id_of_the_wrong_length_rejects_its_span_alone(api_client, tenant):
    # given
    body = otlp_json(export(chat(A), chat(B)))
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "abcd"
    # when
    response = post_json(api_client, body)
    # then
    assert partial_success(response) == (
        1,
        "resourceSpans[0].scopeSpans[0].spans[1]: traceId must be 16 bytes, not all zero",
    )
    assert len(stored(tenant)) == 1


@pytest.mark.parametrize(
    ("name", "value", "field", "reason"),
    [
        (
            "name",
            '"a\\u0000b"',
            "resourceSpans[0].scopeSpans[0].spans[0].name",
            "must not contain NUL",
        ),
        (
            "name",
            '"\\ud800"',
            "resourceSpans[0].scopeSpans[0].spans[0].name",
            "must be valid Unicode",
        ),
        (
            "kind",
            "1e400",
            "resourceSpans[0].scopeSpans[0].spans[0].kind",
            "must be a finite number",
        ),
        (
            "attributes",
            '[{"key": "k", "value": {"boolValue": "yes"}}]',
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.boolValue",
            "Expected true or false",
        ),
        ("endTimeUnixNano", '"soon"', "resourceSpans.scopeSpans.spans.endTimeUnixNano", "invalid"),
    ],
)
def test_json_values_that_cannot_be_read_are_refused_naming_the_field(
    api_client, tenant, name, value, field, reason
):
    # given
    body = '{"resourceSpans": [{"scopeSpans": [{"spans": [{"' + name + '": ' + value + "}]}]}]}"
    # when
    response = post_json(api_client, body.encode())
    # then
    errors = field_errors(response)
    assert list(errors) == [field] and errors[field].startswith(reason), errors


def test_json_nested_past_the_api_bound_is_refused(api_client):
    # given: an AnyValue nested 70 levels deep
    value = {"stringValue": "x"}
    for _ in range(25):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    body = otlp_json(export(chat(A)))
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"].append(
        {"key": "deep", "value": value}
    )
    # when
    response = post_json(api_client, body)
    # then
    assert error(response) == (400, "parse_error")


@time_machine.travel(NOW, tick=False)
def test_json_is_answered_with_partial_success_in_json(api_client, tenant):
    # when
    response = post_json(api_client, otlp_json(export(chat(A, input_tokens=-3))))
    # then
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "resourceSpans[0].scopeSpans[0].spans[0]: "
            "gen_ai.usage.input_tokens must be greater than or equal to 0",
        }
    }


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_gzip_bodies_are_accepted(api_client, tenant, encoding):
    # given
    message = export(chat(A))
    if encoding == "protobuf":
        body, content_type = message.SerializeToString(), PROTOBUF
    else:
        body, content_type = json.dumps(otlp_json(message)).encode(), "application/json"
    # when
    response = api_client.generic(
        "POST", URL, gzip.compress(body), content_type, HTTP_CONTENT_ENCODING="gzip"
    )
    # then
    assert partial_success(response) == (0, "")
    assert len(stored(tenant)) == 1


def test_empty_protobuf_body_is_an_empty_export(api_client):
    # when
    response = api_client.generic("POST", URL, b"", PROTOBUF)
    # then
    assert partial_success(response) == (0, "")


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "headers", "expected"),
    [
        ("text/plain", b"hello", {}, (415, "unsupported_media_type")),
        ("application/x-www-form-urlencoded", b"a=1", {}, (415, "unsupported_media_type")),
        (PROTOBUF, b"\x0a\x05\x0a\x03", {}, (400, "parse_error")),  # truncated
        (PROTOBUF, b"\xff\xff\xff", {}, (400, "parse_error")),
        ("application/json", b'{"resourceSpans": [', {}, (400, "parse_error")),
        ("application/json", b"[1, 2]", {}, (400, "parse_error")),
        ("application/json", b"", {}, (400, "parse_error")),
        ("application/json", b'{"resourceSpans": "many"}', {}, (400, "validation_error")),
        (
            "application/json",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}',
            {},
            (400, "validation_error"),
        ),
        (PROTOBUF, b"not gzip", {"HTTP_CONTENT_ENCODING": "gzip"}, (400, "parse_error")),
        (
            PROTOBUF,
            gzip.compress(b"x" * 100)[:-9],
            {"HTTP_CONTENT_ENCODING": "gzip"},
            (400, "parse_error"),
        ),
        (PROTOBUF, b"", {"HTTP_CONTENT_ENCODING": "br"}, (415, "unsupported_media_type")),
    ],
)
def test_bad_requests_get_a_clear_4xx(api_client, tenant, content_type, body, headers, expected):
    # when
    response = api_client.generic("POST", URL, body, content_type, **headers)
    # then
    assert error(response) == expected
    assert response.json()["message"]
    assert stored(tenant) == []


def test_ten_megabyte_body_is_refused_before_it_is_read(api_client):
    # when
    response = api_client.generic("POST", URL, b"\x00" * (10 * 1024 * 1024), PROTOBUF)
    # then
    assert error(response) == (413, "payload_too_large")


def test_gzip_body_inflating_past_the_limit_is_refused(api_client, settings):
    # given: 64 KiB on the wire, 8 MiB inflated
    settings.API_MAX_BODY_BYTES = 1_048_576
    body = gzip.compress(b"\x00" * (8 * 1024 * 1024))
    assert len(body) < 65536
    # when
    response = api_client.generic("POST", URL, body, PROTOBUF, HTTP_CONTENT_ENCODING="gzip")
    # then
    assert error(response) == (413, "payload_too_large")


def test_missing_or_wrong_key_is_401(client):
    # given
    body = export(chat(A)).SerializeToString()
    # when
    anonymous = client.generic("POST", URL, body, PROTOBUF)
    wrong = client.generic("POST", URL, body, PROTOBUF, HTTP_AUTHORIZATION="Api-Key nope")
    # then
    assert error(anonymous) == (401, "not_authenticated")
    assert error(wrong) == (401, "authentication_failed")


# --- tenants ----------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_tenants_do_not_see_or_affect_each_others_spans(
    api_client, other_client, tenant, other_tenant
):
    # given: the other tenant stored the inner call of a chain
    post_protobuf(other_client, export(chat(C, parent=B)))
    # when: this tenant sends the outer call, then the inner one with the same ids
    post_protobuf(api_client, export(chat(B, parent=A), agent(A)))
    post_protobuf(api_client, export(chat(C, parent=B)))
    # then: the other tenant's call made nothing a wrapper here; this tenant's outer call did
    assert [r.idempotency_key for r in stored(tenant)] == [TRACE + B + A]
    assert [r.idempotency_key for r in stored(other_tenant)] == [TRACE + C + B]
    assert RunRecord.objects.filter(tenant=other_tenant).count() == 0
    assert RunRecord.objects.filter(tenant=tenant).count() == 1
