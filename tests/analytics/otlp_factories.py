"""OTLP trace exports built by hand for the OTLP tests: protobuf messages and their JSON form."""

import base64
from datetime import datetime

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.factories import utc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = utc(2026, 3, 2, 10, 0)


def nanos(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def value(raw) -> AnyValue:
    if isinstance(raw, AnyValue):
        return raw
    if isinstance(raw, bool):
        return AnyValue(bool_value=raw)
    if isinstance(raw, int):
        return AnyValue(int_value=raw)
    if isinstance(raw, float):
        return AnyValue(double_value=raw)
    return AnyValue(string_value=raw)


def attributes(values: dict) -> list[KeyValue]:
    return [KeyValue(key=key, value=value(raw)) for key, raw in values.items()]


def span(
    span_id: str,
    *,
    parent: str | None = None,
    trace: str = TRACE,
    start: datetime = T0,
    end: datetime | None = None,
    error: str | None = None,
    name: str = "span",
    **attrs,
) -> Span:
    """A span; keyword attributes use `__` for dots (gen_ai__operation__name=...)."""
    end = end or start
    message = Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=nanos(start),
        end_time_unix_nano=nanos(end),
        attributes=attributes({key.replace("__", "."): raw for key, raw in attrs.items()}),
    )
    if error is not None:
        message.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return message


def chat(span_id: str, *, model="gpt-4o", input_tokens=1000, output_tokens=200, **kwargs) -> Span:
    """A model-call span as the GenAI conventions describe it."""
    attrs = {
        "gen_ai__operation__name": "chat",
        "gen_ai__provider__name": "openai",
        "gen_ai__request__model": model,
    }
    if input_tokens is not None:
        attrs["gen_ai__usage__input_tokens"] = input_tokens
    if output_tokens is not None:
        attrs["gen_ai__usage__output_tokens"] = output_tokens
    return span(span_id, name=f"chat {model}", **{**attrs, **kwargs})


def agent(span_id: str, *, agent_name="planner", **kwargs) -> Span:
    attrs = {"gen_ai__operation__name": "invoke_agent", "gen_ai__agent__name": agent_name}
    return span(span_id, name=f"invoke_agent {agent_name}", **{**attrs, **kwargs})


def export(*spans: Span, resource: dict | None = None) -> ExportTraceServiceRequest:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    resource_spans.resource.attributes.extend(attributes(resource or {}))
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


def otlp_json(message: ExportTraceServiceRequest) -> dict:
    """The OTLP JSON encoding of `message`: protobuf's JSON mapping with hex ids."""
    data = json_format.MessageToDict(message)
    for resource_spans in data.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return data
