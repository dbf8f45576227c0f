"""OpenTelemetry spans of the GenAI semantic conventions as model calls and agent runs.

Pure: no ORM, no settings. `export_read` turns one decoded OTLP trace export into the model
calls, agent invocations and malformed spans it holds; `calls_to_price` applies the rule that
prices each model call once (see its docstring). The database side is `services/otlp.py`.

Attributes read (span attributes win over the resource's; every other attribute is ignored;
`...` stands for `gen_ai.usage`, the older flat names):

| What | Attributes, first present wins |
|---|---|
| kind of span | `gen_ai.operation.name`; older instrumentations: `llm.request.type` |
| model | `gen_ai.response.model`, `gen_ai.request.model` |
| provider | `gen_ai.provider.name`, `gen_ai.system` |
| input tokens | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens` |
| output tokens | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens` |
| cache reads | `gen_ai.usage.cache_read.input_tokens`; `..._cache_read_input_tokens` |
| cache writes | `gen_ai.usage.cache_creation.input_tokens`; `..._cache_creation_input_tokens` |
| user | `user.id`, `enduser.id` (span or resource) |
| feature tag | `costwise.feature_tag` (span or resource) |
| agent (run worker) | `gen_ai.agent.name`, `gen_ai.agent.id`, resource `service.name` |
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

VERSION = "1"

# Operations that call a model and are billed by tokens.
MODEL_CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
AGENT_OPERATION = "invoke_agent"
# `llm.request.type` of instrumentations that predate gen_ai.operation.name.
LEGACY_OPERATIONS = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "embeddings": "embeddings",
}

OPERATION = "gen_ai.operation.name"
LEGACY_OPERATION = "llm.request.type"
RESPONSE_MODEL = "gen_ai.response.model"
REQUEST_MODEL = "gen_ai.request.model"
PROVIDER = "gen_ai.provider.name"
LEGACY_PROVIDER = "gen_ai.system"
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
)
CACHE_WRITE_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
USER_ID = ("user.id", "enduser.id")
FEATURE_TAG = "costwise.feature_tag"
AGENT_NAME = ("gen_ai.agent.name", "gen_ai.agent.id")
SERVICE_NAME = "service.name"

SPAN_ATTRIBUTES = frozenset(
    {
        OPERATION,
        LEGACY_OPERATION,
        RESPONSE_MODEL,
        REQUEST_MODEL,
        PROVIDER,
        LEGACY_PROVIDER,
        FEATURE_TAG,
        *INPUT_TOKENS,
        *OUTPUT_TOKENS,
        *CACHE_READ_TOKENS,
        *CACHE_WRITE_TOKENS,
        *USER_ID,
        *AGENT_NAME,
    }
)
RESOURCE_ATTRIBUTES = frozenset({*USER_ID, FEATURE_TAG, SERVICE_NAME})

# Bounds of the stored columns and of the batch API, so a span can never store what a batch
# could not: identifiers of 64 characters (feature tags 128), token counts of one call up to
# a billion, times from 2000-01-01 up to receipt + 5 minutes of clock skew.
MAX_ID_LENGTH = 64
MAX_TAG_LENGTH = 128
MAX_TOKENS = 1_000_000_000
MAX_AGENT_TOKENS = 100_000_000_000
MAX_LATENCY_MS = 30 * 24 * 3600 * 1000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
# The parent part of a root span's idempotency key (the invalid span id of OpenTelemetry).
NO_PARENT = "0" * (2 * SPAN_ID_BYTES)

STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


OTHER_PARENT = "the span was sent before with another parentSpanId; not recorded again"


class _Malformed(Exception):
    """The span cannot be recorded; the message says why, naming the attribute."""


@dataclass(frozen=True)
class Rejection:
    """A GenAI span that was not recorded: where it is in the request and why."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass(frozen=True)
class ModelCall:
    """A model-call span. `has_usage` is False when it reports no token count at all."""

    location: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    model: str
    provider: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    has_usage: bool
    user_id: str | None
    feature_tag: str | None
    ended_at: datetime

    @property
    def idempotency_key(self) -> str:
        """Trace id, span id and parent span id in hex: 64 characters, stable for a span.

        The parent is part of the key so that a later export can tell, from the stored
        records alone, which calls sit below a span (see calls_to_price)."""
        return f"{self.trace_id}{self.span_id}{self.parent_span_id or NO_PARENT}"


@dataclass(frozen=True)
class AgentInvocation:
    """An `invoke_agent` span, as the run it stands for."""

    location: str
    trace_id: str
    span_id: str
    worker_id: str
    failed: bool
    error: str | None
    total_tokens: int | None
    latency_ms: int
    started_at: datetime
    ended_at: datetime

    @property
    def run_id(self) -> str:
        return f"{self.trace_id}-{self.span_id}"


@dataclass
class SpanExport:
    """What one export holds: every span's parent (GenAI or not, to walk ancestries), its
    model calls, agent invocations and malformed GenAI spans."""

    span_count: int = 0
    parents: dict[tuple[str, str], str | None] = field(default_factory=dict)
    calls: list[ModelCall] = field(default_factory=list)
    agents: list[AgentInvocation] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def trace_ids(self) -> list[str]:
        return sorted({trace_id for trace_id, _ in self.parents})

    def linked_span_ids(self) -> list[str]:
        """Span ids of the export and the parents they name: the only stored calls that can
        matter to calls_to_price."""
        ids = {span_id for _, span_id in self.parents}
        ids.update(parent for parent in self.parents.values() if parent is not None)
        return sorted(ids)


@dataclass(frozen=True)
class StoredCall:
    """A model call recorded by an earlier export (from its idempotency key)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None


@dataclass(frozen=True)
class CallSelection:
    priced: list[ModelCall]
    # Calls that another call in their chain already stands for; never recorded.
    wrappers: list[ModelCall]
    rejected: list[Rejection]


def export_read(request, *, received_at: datetime) -> SpanExport:
    """The GenAI content of an `ExportTraceServiceRequest`.

    Spans that are not GenAI spans are only kept as links in the ancestry; malformed GenAI
    spans are rejected one by one, never the whole export.
    """
    latest = received_at + MAX_CLOCK_SKEW
    export = SpanExport()
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes, RESOURCE_ATTRIBUTES)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for k, span in enumerate(scope_spans.spans):
                export.span_count += 1
                location = f"resourceSpans[{r}].scopeSpans[{s}].spans[{k}]"
                attributes = _attributes(span.attributes, SPAN_ATTRIBUTES)
                ids = _ids(span)
                if isinstance(ids, tuple):
                    export.parents[ids[:2]] = ids[2]
                try:
                    operation = _operation(attributes)
                    if operation is None:
                        continue
                    if isinstance(ids, str):
                        raise _Malformed(ids)
                    if operation == AGENT_OPERATION:
                        export.agents.append(
                            _agent(span, ids, attributes, resource, location, latest)
                        )
                    else:
                        export.calls.append(
                            _call(span, ids, attributes, resource, location, latest)
                        )
                except _Malformed as exc:
                    export.rejected.append(Rejection(location, str(exc)))
    return export


# complexity: the nesting rule of the docstring, decided per call from the covered spans, the stored
# calls and the parent links
def calls_to_price(export: SpanExport, stored: Iterable[StoredCall]) -> CallSelection:
    """Each chain of nested model calls is priced once, at its innermost call with usage.

    A framework often wraps a provider call in a model-call span of its own (a `chat` span
    around the OpenAI instrumentation's `chat` span) and reports the same usage on both.
    The rule, per trace:

    - a call with token counts is priced unless another call with token counts lies below
      it (in this export, or stored by an earlier one), or a call above it was already
      stored by an earlier export (the rare order: an exporter that sends the outer span
      first keeps that one, and its inner calls are not recorded again);
    - a call without token counts is not recorded: silently when a call below or above it
      stands for it, otherwise it is rejected, so a streamed call whose usage was never
      reported shows up instead of costing nothing.

    "Below" follows parent links through every span of the export, GenAI or not, and the
    parent span id stored with each recorded call, so the rule holds whether the inner call
    arrives in the same export, an earlier one or a later one. `invoke_agent` spans become
    runs and are never priced, so an agent span reporting its calls' summed usage counts
    nothing twice. One case stays out of reach: three nested model calls with usage sent
    in three separate exports, the middle one last but one, price twice; nothing records
    a span that was not itself priced.
    """
    parents = export.parents
    candidates = [call for call in export.calls if call.has_usage]
    covered: set[tuple[str, str]] = set()
    for trace_id, parent in [(c.trace_id, c.parent_span_id) for c in candidates] + [
        (s.trace_id, s.parent_span_id) for s in stored
    ]:
        for node in _ancestors(parents, trace_id, parent):
            if node in covered:
                # Its own ancestors were marked when it was.
                break
            covered.add(node)
    stored_ids = {(s.trace_id, s.span_id) for s in stored}
    # A call with usage above one without stands for it; above one with usage, it is itself
    # a wrapper, so only the stored calls above count for those.
    usage_ids = stored_ids | {(c.trace_id, c.span_id) for c in candidates}

    memos: dict[int, dict] = {id(stored_ids): {}, id(usage_ids): {}}

    def under_recorded(call: ModelCall) -> bool:
        above = stored_ids if call.has_usage else usage_ids
        return _reaches(parents, above, memos[id(above)], call.trace_id, call.parent_span_id)

    # A span is one call whatever its parent says: the same ids with another parent, stored
    # or earlier in the export, are not a second call.
    parent_of = {(s.trace_id, s.span_id): s.parent_span_id for s in stored}
    priced, wrappers, rejected = [], [], []
    for call in export.calls:
        own = (call.trace_id, call.span_id)
        known_parent = parent_of.setdefault(own, call.parent_span_id)
        if known_parent != call.parent_span_id:
            rejected.append(Rejection(call.location, OTHER_PARENT))
        elif own in covered or under_recorded(call):
            wrappers.append(call)
        elif call.has_usage:
            priced.append(call)
        else:
            rejected.append(
                Rejection(
                    call.location,
                    f"model call without token counts ({INPUT_TOKENS[0]}, {OUTPUT_TOKENS[0]});"
                    " not recorded",
                )
            )
    return CallSelection(priced=priced, wrappers=wrappers, rejected=rejected)


def _reaches(parents: dict, targets: set, memo: dict, trace_id: str, parent: str | None) -> bool:
    """Whether `parent` or one of its ancestors is in `targets`. `memo` keeps the answer of
    every span walked, so the calls of one export cost one walk of the tree in all, however
    deep (a long chain of nested calls would otherwise be walked once per call)."""
    path = []
    found = False
    for node in _ancestors(parents, trace_id, parent):
        if node in memo:
            found = memo[node]
            break
        path.append(node)
        if node in targets:
            found = True
            break
    for node in path:
        memo[node] = found
    return found


def _ancestors(parents: dict, trace_id: str, parent: str | None) -> Iterator[tuple[str, str]]:
    """(trace, span) of `parent` and its ancestors known to the export, nearest first. Stops
    at a span seen before on the way: parent links sent by a client may form a cycle."""
    seen = set()
    while parent is not None:
        node = (trace_id, parent)
        if node in seen:
            return
        seen.add(node)
        yield node
        parent = parents.get(node)


# --- one span -------------------------------------------------------------------------------


def _attributes(key_values, wanted: frozenset) -> dict:
    """The wanted attributes as {key: AnyValue}; the first of a repeated key wins."""
    found = {}
    for key_value in key_values:
        key = key_value.key
        if key in wanted and key not in found:
            found[key] = key_value.value
    return found


def _ids(span) -> tuple[str, str, str | None] | str:
    """(trace id, span id, parent span id or None) in lowercase hex, or why they are bad."""
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != TRACE_ID_BYTES or not any(trace_id):
        return f"traceId must be {TRACE_ID_BYTES} bytes, not all zero"
    if len(span_id) != SPAN_ID_BYTES or not any(span_id):
        return f"spanId must be {SPAN_ID_BYTES} bytes, not all zero"
    if parent and len(parent) != SPAN_ID_BYTES:
        return f"parentSpanId must be empty or {SPAN_ID_BYTES} bytes"
    return trace_id.hex(), span_id.hex(), parent.hex() if parent and any(parent) else None


def _operation(attributes: dict) -> str | None:
    """The span's GenAI operation if it is a model call or an agent invocation, else None."""
    value = attributes.get(OPERATION)
    if value is not None:
        name = value.string_value if value.WhichOneof("value") == "string_value" else None
        if name in MODEL_CALL_OPERATIONS or name == AGENT_OPERATION:
            return name
        return None
    value = attributes.get(LEGACY_OPERATION)
    if value is not None and value.WhichOneof("value") == "string_value":
        return LEGACY_OPERATIONS.get(value.string_value)
    return None


# complexity: each GenAI attribute is optional and read with its own fallback; the cache-token
# correction needs all of them
def _call(span, ids, attributes, resource, location, latest) -> ModelCall:
    trace_id, span_id, parent = ids
    model = _text(attributes, (RESPONSE_MODEL, REQUEST_MODEL), MAX_ID_LENGTH)
    if model is None:
        raise _Malformed(f"{REQUEST_MODEL} or {RESPONSE_MODEL} is required")
    input_tokens = _tokens(attributes, INPUT_TOKENS, MAX_TOKENS)
    output_tokens = _tokens(attributes, OUTPUT_TOKENS, MAX_TOKENS)
    cache_read = _tokens(attributes, CACHE_READ_TOKENS, MAX_TOKENS)
    cache_write = _tokens(attributes, CACHE_WRITE_TOKENS, MAX_TOKENS)
    cached = (cache_read or 0) + (cache_write or 0)
    total_input = input_tokens or 0
    if total_input < cached:
        # The conventions count cached tokens in input_tokens; an instrumentation passing
        # on Anthropic's usage as is reports the uncached part only. Less input than cache
        # cannot be the inclusive count, so the cache counts are added.
        total_input += cached
        if total_input > MAX_TOKENS:
            raise _Malformed(f"{INPUT_TOKENS[0]} plus cache tokens exceed {MAX_TOKENS}")
    return ModelCall(
        location=location,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        model=model,
        provider=_text(attributes, (PROVIDER, LEGACY_PROVIDER), MAX_ID_LENGTH),
        input_tokens=total_input,
        output_tokens=output_tokens or 0,
        cache_read_tokens=cache_read or 0,
        cache_write_tokens=cache_write or 0,
        has_usage=input_tokens is not None or output_tokens is not None,
        user_id=_text(attributes, USER_ID, MAX_ID_LENGTH, resource),
        feature_tag=_text(attributes, (FEATURE_TAG,), MAX_TAG_LENGTH, resource),
        ended_at=_end_time(span, latest),
    )


# complexity: each attribute of an invoke_agent span is checked with a rejection of its own
def _agent(span, ids, attributes, resource, location, latest) -> AgentInvocation:
    trace_id, span_id, _ = ids
    worker_id = _text(attributes, AGENT_NAME, MAX_ID_LENGTH) or _text(
        {}, (SERVICE_NAME,), MAX_ID_LENGTH, resource
    )
    if worker_id is None:
        raise _Malformed(f"{AGENT_NAME[0]} (or resource {SERVICE_NAME}) is required")
    ended_at = _end_time(span, latest)
    started_at = _time(span.start_time_unix_nano, "startTimeUnixNano")
    if started_at > ended_at:
        raise _Malformed("startTimeUnixNano must not be later than endTimeUnixNano")
    latency_ms = (span.end_time_unix_nano - span.start_time_unix_nano) // 1_000_000
    if latency_ms > MAX_LATENCY_MS:
        raise _Malformed("the span must not last longer than 30 days")
    input_tokens = _tokens(attributes, INPUT_TOKENS, MAX_AGENT_TOKENS)
    output_tokens = _tokens(attributes, OUTPUT_TOKENS, MAX_AGENT_TOKENS)
    total = None
    if input_tokens is not None or output_tokens is not None:
        total = (input_tokens or 0) + (output_tokens or 0)
    failed = span.status.code == STATUS_CODE_ERROR
    error = None
    if failed:
        # Free text, kept as sent but for NUL, which a text column cannot hold.
        error = span.status.message.replace("\x00", "\ufffd") or "error"
    return AgentInvocation(
        location=location,
        trace_id=trace_id,
        span_id=span_id,
        worker_id=worker_id,
        failed=failed,
        error=error,
        total_tokens=total,
        latency_ms=latency_ms,
        started_at=started_at,
        ended_at=ended_at,
    )


def _text(attributes, keys, max_length, resource=None) -> str | None:
    """The first of `keys` present on the span, then on the resource, as a bounded string."""
    for source in (attributes, resource or {}):
        for key in keys:
            value = source.get(key)
            if value is None:
                continue
            if value.WhichOneof("value") != "string_value":
                raise _Malformed(f"{key} must be a string")
            text = value.string_value
            if not text:
                raise _Malformed(f"{key} may not be blank")
            if len(text) > max_length:
                raise _Malformed(f"{key} must be at most {max_length} characters")
            if "\x00" in text:
                raise _Malformed(f"{key} must not contain NUL characters")
            return text
    return None


def _tokens(attributes, keys, maximum) -> int | None:
    """The first of `keys` present, as a count in [0, maximum]; None when none is present."""
    for key in keys:
        value = attributes.get(key)
        if value is None:
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":
            count = value.int_value
        elif kind == "double_value" and value.double_value.is_integer():
            # Some SDKs record every number as a double.
            count = int(value.double_value)
        else:
            raise _Malformed(f"{key} must be an integer")
        if count < 0:
            raise _Malformed(f"{key} must be greater than or equal to 0")
        if count > maximum:
            raise _Malformed(f"{key} must be less than or equal to {maximum}")
        return count
    return None


def _end_time(span, latest: datetime) -> datetime:
    ended_at = _time(span.end_time_unix_nano, "endTimeUnixNano")
    if ended_at > latest:
        raise _Malformed("endTimeUnixNano must not be later than receipt time + 5 minutes")
    return ended_at


_EARLIEST_NANO = (EARLIEST - EPOCH) // timedelta(microseconds=1) * 1000
_LATEST_NANO = (LATEST - EPOCH) // timedelta(microseconds=1) * 1000


def _time(unix_nano: int, name: str) -> datetime:
    if not unix_nano:
        raise _Malformed(f"{name} is required")
    # Checked on the integer: a fixed64 reaches far past what a datetime can hold.
    if not _EARLIEST_NANO <= unix_nano < _LATEST_NANO:
        raise _Malformed(f"{name} must be between 2000-01-01 and 2099-12-31 (UTC)")
    return EPOCH + timedelta(microseconds=unix_nano // 1000)
