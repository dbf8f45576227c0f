"""`POST /v1/traces`: OpenTelemetry trace exports over OTLP/HTTP.

The body is an `ExportTraceServiceRequest` in either encoding of the protocol: binary
protobuf (`application/x-protobuf`, what the SDK exporters send) or JSON
(`application/json`: protobuf's JSON mapping, except that trace and span ids are hex
strings), optionally with `Content-Encoding: gzip`. The answer is an
`ExportTraceServiceResponse` in the request's encoding; malformed GenAI spans are counted
and named in its `partial_success`. Errors of the request as a whole (credentials, size,
media type, a body that does not decode) use the API's standard JSON error body.
"""

import base64
import binascii
import math
import re
import zlib
from dataclasses import dataclass

from django import urls
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from rest_framework import exceptions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from analytics.api.authentication import ApiKeyAuthentication
from analytics.api.errors import PayloadTooLarge
from analytics.api.parsers import parse_json_bytes
from analytics.api.permissions import request_tenant
from analytics.services.otlp import otlp_traces_ingest

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# A gzip body may inflate to this many times the API's body limit; more is a 413, so a
# small compressed body cannot make the service hold gigabytes.
MAX_INFLATION = 4
# Rejections listed in partial_success.error_message; the count covers all of them.
MAX_LISTED_REJECTIONS = 20

# The id fields of the JSON encoding, hex there and base64 in protobuf's own JSON mapping.
_SPAN_ID_FIELDS = (
    ("traceId", "trace_id"),
    ("spanId", "span_id"),
    ("parentSpanId", "parent_span_id"),
)
_LINK_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))


def register_urls() -> list:
    """The route, mounted at the root (`config/urls.py`), where exporters expect it."""
    return [urls.path("v1/traces", OtlpTracesView.as_view(), name="otlp-traces")]


@dataclass(frozen=True)
class OtlpBody:
    """A decoded export and its encoding."""

    message: ExportTraceServiceRequest
    media_type: str


def _read_body(stream, parser_context) -> bytes:
    """The body, bounded, without its content coding."""
    request = parser_context["request"]
    limit = settings.API_MAX_BODY_BYTES
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
    # The view refused every other coding before the body is parsed.
    if _content_coding(request) != "gzip":
        return raw
    return _gunzip(raw, MAX_INFLATION * limit)


def _content_coding(request) -> str:
    return request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise exceptions.ParseError(f"Body is not valid gzip: {exc}.") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"Decompressed request body exceeds {limit} bytes.")
    if not inflater.eof:
        raise exceptions.ParseError("Body is not valid gzip: the stream is truncated.")
    if inflater.unused_data:
        raise exceptions.ParseError("Body is not valid gzip: data after the end of the stream.")
    return body


class OtlpProtobufParser(BaseParser):
    media_type = PROTOBUF

    def parse(self, stream, media_type=None, parser_context=None) -> OtlpBody:
        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(_read_body(stream, parser_context))
        except DecodeError as exc:
            raise exceptions.ParseError(
                f"Body is not a protobuf ExportTraceServiceRequest (truncated or malformed): {exc}"
            ) from None
        return OtlpBody(message, PROTOBUF)


class OtlpJSONParser(BaseParser):
    """The JSON encoding, under the API's rules for every JSON body: nesting at most
    MAX_JSON_DEPTH levels, no NaN or infinite numbers, no text PostgreSQL could not store (a
    NUL, a lone surrogate), each refused with a 400 naming the field. Hex ids become
    protobuf's base64, then json_format reads the rest (lowerCamelCase or original field
    names, enums as integers or names, 64-bit integers as strings or numbers, unknown fields
    ignored)."""

    media_type = JSON

    def parse(self, stream, media_type=None, parser_context=None) -> OtlpBody:
        data = parse_json_bytes(_read_body(stream, parser_context))
        if type(data) is not dict:
            raise exceptions.ParseError("Body must be an ExportTraceServiceRequest JSON object.")
        errors = _unstorable_values(data)
        if not errors:
            errors = _hex_ids_to_base64(data)
        if errors:
            raise exceptions.ValidationError(errors)
        message = ExportTraceServiceRequest()
        try:
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise exceptions.ValidationError(_parse_error_detail(str(exc))) from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise exceptions.ParseError(f"Not an ExportTraceServiceRequest: {exc}") from None
        return OtlpBody(message, JSON)


MAX_LISTED_FIELD_ERRORS = 20
_PARSE_ERROR_PATH = re.compile(
    r"^(?:Failed to parse \w+ field: )*(.*?) at ExportTraceServiceRequest\.(\S+?)\.*$"
)


# complexity: one iterative walk checks keys, strings and floats at every depth; the branch on the
# value's type is the walk
def _unstorable_values(data: dict) -> dict[str, list[str]]:
    """Text a column could not hold and numbers past float's range, by field path. Iterative:
    the depth is bounded, the breadth is not."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[str, object]] = [("", data)]
    while stack and len(errors) < MAX_LISTED_FIELD_ERRORS:
        path, value = stack.pop()
        if type(value) is dict:
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else key
                reason = _text_problem(key)
                if reason is not None:
                    errors[child_path] = [f"field name {reason}"]
                stack.append((child_path, child))
        elif type(value) is list:
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(value))
        elif type(value) is str:
            reason = _text_problem(value)
            if reason is not None:
                errors[path] = [reason]
        elif type(value) is float and not math.isfinite(value):
            errors[path] = ["must be a finite number"]
    return errors


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "must be valid Unicode text"
    return None


def _parse_error_detail(message: str) -> dict[str, list[str]]:
    """json_format's message as the API's field errors. Most messages end with the field's
    path (`... at ExportTraceServiceRequest.resourceSpans[0].scopeSpans[0].spans[1].kind`);
    the others only chain the field names (`Failed to parse resourceSpans field: ...`),
    which still say which field, without the list indexes."""
    match = _PARSE_ERROR_PATH.match(message)
    if match is not None:
        return {match.group(2): [match.group(1)]}
    names = []
    rest = message
    while rest.startswith("Failed to parse ") and " field: " in rest:
        name, _, rest = rest.removeprefix("Failed to parse ").partition(" field: ")
        names.append(name)
    field = ".".join(names) or "non_field_errors"
    return {field: [rest.rstrip(".") or message]}


def _hex_ids_to_base64(data: dict) -> dict[str, list[str]]:
    """Rewrite the span and link ids of the JSON encoding in place, hex to base64; return
    the ids that are not hex, by field path. An id of the wrong length decodes, and its span
    is then rejected alone, as in the protobuf encoding."""
    errors: dict[str, list[str]] = {}
    for r_path, resource_spans in _items(data, "", "resourceSpans", "resource_spans"):
        for s_path, scope_spans in _items(resource_spans, r_path, "scopeSpans", "scope_spans"):
            for path, span in _items(scope_spans, s_path, "spans", "spans"):
                for names in _SPAN_ID_FIELDS:
                    _rewrite_id(span, path, names, errors)
                for link_path, link in _items(span, path, "links", "links"):
                    for names in _LINK_ID_FIELDS:
                        _rewrite_id(link, link_path, names, errors)
    return errors


def _items(container: dict, path: str, camel: str, snake: str) -> list[tuple[str, dict]]:
    """(path, object) of the objects listed under `camel` (or `snake`); other shapes are
    left for json_format to refuse with its own message."""
    name = camel if camel in container else snake
    value = container.get(name)
    if type(value) is not list:
        return []
    prefix = f"{path}.{name}" if path else name
    return [(f"{prefix}[{index}]", item) for index, item in enumerate(value) if type(item) is dict]


def _rewrite_id(obj: dict, path: str, names: tuple[str, str], errors: dict) -> None:
    for name in names:
        value = obj.get(name)
        if type(value) is not str:
            # Absent, or of a type json_format refuses with its own message.
            continue
        try:
            raw = binascii.unhexlify(value)
        except (binascii.Error, ValueError):
            errors[f"{path}.{name}"] = ["must be a hex string"]
            continue
        obj[name] = base64.b64encode(raw).decode()


def _response(result, media_type: str) -> HttpResponse:
    message = ExportTraceServiceResponse()
    if result.rejected:
        listed = "; ".join(str(item) for item in result.rejected[:MAX_LISTED_REJECTIONS])
        more = len(result.rejected) - MAX_LISTED_REJECTIONS
        if more > 0:
            listed += f"; and {more} more"
        message.partial_success.rejected_spans = len(result.rejected)
        message.partial_success.error_message = listed
    if media_type == PROTOBUF:
        return HttpResponse(message.SerializeToString(), content_type=PROTOBUF)
    return HttpResponse(json_format.MessageToJson(message, indent=None), content_type=JSON)


# --- OpenAPI ----------------------------------------------------------------------------------


class OtlpPartialSuccessSerializer(serializers.Serializer):
    rejectedSpans = serializers.RegexField(  # noqa: N815 (the protocol's field name)
        r"^[0-9]+$",
        help_text="Spans not recorded, as a decimal string (protobuf's JSON form of int64).",
    )
    errorMessage = serializers.CharField(  # noqa: N815
        help_text="Each rejected span's place in the request and why, e.g. "
        "`resourceSpans[0].scopeSpans[0].spans[3]: gen_ai.usage.input_tokens must be an "
        "integer`."
    )


class OtlpExportResponseSerializer(serializers.Serializer):
    partialSuccess = OtlpPartialSuccessSerializer(  # noqa: N815
        required=False, help_text="Present only when spans were rejected."
    )


_HEX = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"}
_UNIX_NANO = {
    "oneOf": [
        {"type": "string", "pattern": "^[0-9]{1,20}$"},
        {"type": "integer", "minimum": 0},
    ]
}
_ATTRIBUTES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "value": {
                "type": "object",
                "description": "An AnyValue: one of stringValue, boolValue, intValue, "
                "doubleValue, arrayValue, kvlistValue, bytesValue.",
                "properties": {
                    "stringValue": {"type": "string"},
                    "boolValue": {"type": "boolean"},
                    "intValue": {
                        "oneOf": [
                            {"type": "string", "pattern": "^-?[0-9]{1,19}$"},
                            {"type": "integer"},
                        ]
                    },
                    "doubleValue": {"type": "number"},
                },
            },
        },
    },
}
OTLP_JSON_REQUEST = {
    "type": "object",
    "description": "ExportTraceServiceRequest in the OTLP JSON encoding (hex ids, "
    "lowerCamelCase names). Unknown fields are ignored.",
    "properties": {
        "resourceSpans": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "resource": {"type": "object", "properties": {"attributes": _ATTRIBUTES}},
                    "scopeSpans": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "spans": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "traceId": _HEX,
                                            "spanId": _HEX,
                                            "parentSpanId": _HEX,
                                            "name": {"type": "string"},
                                            "kind": {"type": "integer"},
                                            "startTimeUnixNano": _UNIX_NANO,
                                            "endTimeUnixNano": _UNIX_NANO,
                                            "attributes": _ATTRIBUTES,
                                            "status": {
                                                "type": "object",
                                                "properties": {
                                                    "code": {"type": "integer"},
                                                    "message": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            },
                        },
                    },
                },
            },
        }
    },
}


class OtlpTracesView(APIView):
    """Thin: decode (parsers), record (one service call), answer in the request's encoding."""

    authentication_classes = [ApiKeyAuthentication]
    parser_classes = [OtlpProtobufParser, OtlpJSONParser]

    def initial(self, request, *args, **kwargs):
        # The size first, as the body limit middleware does under /api/: a client sending
        # 10 MB learns that before anything else. Then credentials, then the media type and
        # content coding, checked here because an empty body reaches no parser.
        limit = settings.API_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        super().initial(request, *args, **kwargs)
        content_type = request.content_type
        if not any(media_type_matches(p.media_type, content_type) for p in self.parser_classes):
            raise exceptions.UnsupportedMediaType(
                content_type or "(none)", f"Content-Type must be {PROTOBUF} or {JSON}."
            )
        coding = _content_coding(request)
        if coding not in ("", "identity", "gzip"):
            raise exceptions.UnsupportedMediaType(
                coding, f"Content-Encoding {coding!r} is not supported; send gzip or no encoding."
            )

    def perform_content_negotiation(self, request, force=False):
        # The answer's encoding follows the request's, whatever Accept says.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="otlp_traces_export",
        summary="Export OpenTelemetry traces (OTLP/HTTP)",
        description=(
            "GenAI model-call spans become cost records (priced from model and tokens), "
            "`invoke_agent` spans become runs, other spans are ignored. Sending the same "
            "spans again adds nothing. Malformed GenAI spans are rejected one by one in "
            "`partialSuccess`; the rest is recorded. Gzip bodies are accepted "
            "(`Content-Encoding: gzip`). The protobuf encoding is answered in protobuf."
        ),
        request={JSON: OTLP_JSON_REQUEST, PROTOBUF: OpenApiTypes.BINARY},
        responses={
            (200, JSON): OpenApiResponse(
                OtlpExportResponseSerializer, description="ExportTraceServiceResponse"
            ),
            (200, PROTOBUF): OpenApiResponse(
                OpenApiTypes.BINARY, description="ExportTraceServiceResponse (protobuf)"
            ),
        },
        tags=["otlp"],
    )
    def post(self, request):
        received_at = timezone.now()
        body = request.data
        if not isinstance(body, OtlpBody):
            # An empty body reaches no parser: the empty protobuf message, or not JSON.
            if request.content_type.startswith(JSON):
                raise exceptions.ParseError("JSON parse error - the body is empty.")
            body = OtlpBody(ExportTraceServiceRequest(), PROTOBUF)
        result = otlp_traces_ingest(
            tenant=request_tenant(request),
            request=body.message,
            received_at=received_at,
        )
        return _response(result, body.media_type)
