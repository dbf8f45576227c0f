"""The real OpenTelemetry SDK and its OTLP/HTTP exporter against the live test server."""

import json
import threading
from decimal import Decimal

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

from analytics.models import ApiKey, CostRecord, RunRecord
from tests.analytics.otlp_factories import T0, chat, export, otlp_json
from tests.factories import ApiKeyFactory, FeatureTagFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}


class Recorder(SpanExporter):
    """Keeps every exported batch, so the same spans can be exported again."""

    def __init__(self, exporter: OTLPSpanExporter):
        self.exporter = exporter
        self.batches: list = []
        self.results: list[SpanExportResult] = []

    def export(self, spans):
        self.batches.append(list(spans))
        result = self.exporter.export(spans)
        self.results.append(result)
        return result

    def shutdown(self):
        self.exporter.shutdown()


@pytest.fixture
def raw_key(tenant) -> str:
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=tenant, raw_key=raw)
    return raw


def tracer_with(exporter):
    """A tracer whose spans are exported one by one as they end: inner spans reach the
    server before their parents, in separate requests."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-bot", "costwise.feature_tag": "help"})
    )
    recorder = Recorder(exporter)
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    return provider.get_tracer("tests.otlp"), provider, recorder


def run_agent(tracer) -> str:
    """agent -> (framework chat -> provider chat), agent -> embeddings, agent -> sub-agent ->
    chat; returns the trace id."""
    with tracer.start_as_current_span(
        "invoke_agent planner",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "planner",
            "gen_ai.usage.input_tokens": 2600,  # the sum of its calls: never priced
            "gen_ai.usage.output_tokens": 400,
            "user.id": "u-7",
        },
    ) as agent_span:
        with (
            tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    **CHAT,
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                },
            ),
            tracer.start_as_current_span(
                "openai.chat",
                attributes={
                    **CHAT,
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "gen_ai.usage.cache_read.input_tokens": 600,
                    "user.id": "u-7",
                },
            ),
        ):
            pass
        with tracer.start_as_current_span(
            "embeddings text-embedding-3-small",
            attributes={
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 600,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "invoke_agent researcher",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"},
        ) as sub_agent:
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                attributes={
                    **CHAT,
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                },
            ):
                pass
            sub_agent.set_status(Status(StatusCode.ERROR, "source unreachable"))
        with tracer.start_as_current_span("GET /search", attributes={"http.method": "GET"}):
            pass
    return format(agent_span.get_span_context().trace_id, "032x")


def test_sdk_export_of_nested_agent_and_model_spans(live_server, tenant, raw_key):
    # given
    FeatureTagFactory(tenant=tenant, tag="help")
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Api-Key {raw_key}"}
    )
    tracer, provider, recorder = tracer_with(exporter)
    # when
    trace_id = run_agent(tracer)
    provider.shutdown()
    # then: every span went out in its own request, and all were accepted
    assert len(recorder.batches) == 7
    assert set(recorder.results) == {SpanExportResult.SUCCESS}
    records = {r.model: r for r in CostRecord.objects.filter(tenant=tenant)}
    assert set(records) == {"gpt-4o-2024-08-06", "text-embedding-3-small", "gpt-4o-mini"}
    inner = records["gpt-4o-2024-08-06"]
    assert (inner.input_tokens, inner.output_tokens, inner.cache_read_tokens) == (1000, 200, 600)
    assert (inner.user_id, inner.feature_tag, inner.provider) == ("u-7", "help", "openai")
    for record in records.values():
        assert (record.request_id, record.run_id) == (trace_id, trace_id)
        assert record.cost_source == "catalog" and record.cost_cents > 0
    runs = {r.worker_id: r for r in RunRecord.objects.filter(tenant=tenant)}
    assert set(runs) == {"planner", "researcher"}
    assert (runs["planner"].status, runs["planner"].total_tokens) == ("completed", 3000)
    assert (runs["researcher"].status, runs["researcher"].error) == ("failed", "source unreachable")
    assert {run.parent_run_id for run in runs.values()} == {trace_id}

    # when: the same spans are exported again, all at once this time
    spans = [item for batch in recorder.batches for item in batch]
    again = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Api-Key {raw_key}"}
    ).export(spans)
    # then: nothing is added
    assert again == SpanExportResult.SUCCESS
    assert CostRecord.objects.filter(tenant=tenant).count() == 3
    assert RunRecord.objects.filter(tenant=tenant).count() == 2


def test_exporter_configured_from_the_environment_with_gzip(
    live_server, tenant, raw_key, monkeypatch
):
    # given: the configuration the README shows
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{live_server.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Api-Key%20{raw_key}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = OTLPSpanExporter()
    assert exporter._compression.value == "gzip"  # the requests below are gzip bodies
    tracer, provider, recorder = tracer_with(exporter)
    # when
    with tracer.start_as_current_span(
        "chat",
        attributes={**CHAT, "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5},
    ):
        pass
    provider.shutdown()
    # then
    assert recorder.results == [SpanExportResult.SUCCESS]
    (record,) = CostRecord.objects.filter(tenant=tenant)
    assert (record.model, record.input_tokens, record.output_tokens) == ("gpt-4o", 5, 0)


def test_exporter_with_a_wrong_key_fails(live_server, tenant):
    # given
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": "Api-Key wrong"}
    )
    tracer, provider, recorder = tracer_with(exporter)
    # when
    with tracer.start_as_current_span(
        "chat",
        attributes={**CHAT, "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5},
    ):
        pass
    provider.shutdown()
    # then
    assert recorder.results == [SpanExportResult.FAILURE]
    assert CostRecord.objects.count() == 0


def test_json_over_http_with_requests(live_server, tenant, raw_key):
    # given: the SDK exporter speaks protobuf only, so the JSON encoding is sent by hand
    body = otlp_json(export(chat("00f067aa0ba902b7", end=T0), chat("1111111111111111", end=T0)))
    # when
    response = requests.post(
        f"{live_server.url}/v1/traces",
        data=json.dumps(body),
        headers={"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"},
        timeout=30,
    )
    # then
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    assert CostRecord.objects.filter(tenant=tenant).count() == 2


def test_outer_and_inner_call_exported_side_by_side_are_priced_once(live_server, tenant, raw_key):
    # given: 20 traces, each a wrapper and its inner call, sent at the same time by two threads
    traces = [f"{n:032x}" for n in range(1, 21)]
    outer = [export(chat("1111111111111111", parent="0000000000000009", trace=t)) for t in traces]
    inner = [export(chat("2222222222222222", parent="1111111111111111", trace=t)) for t in traces]
    headers = {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/x-protobuf"}
    barrier = threading.Barrier(2)
    statuses = []

    def send(messages):
        with requests.Session() as session:
            for message in messages:
                barrier.wait(timeout=30)
                response = session.post(
                    f"{live_server.url}/v1/traces",
                    data=message.SerializeToString(),
                    headers=headers,
                    timeout=30,
                )
                statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(m,)) for m in (outer, inner)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: one record per trace, whichever request was first
    assert statuses == [200] * 40
    per_trace = {}
    for record in CostRecord.objects.filter(tenant=tenant):
        per_trace[record.request_id] = per_trace.get(record.request_id, 0) + 1
    assert per_trace == dict.fromkeys(traces, 1)
    assert sum(r.cost_cents for r in CostRecord.objects.filter(tenant=tenant)) > Decimal(0)
