"""Input and output shapes of the simulation and provenance endpoints.

The simulation body is checked by field tables of the shared validators
(`analytics/validators.py`, as the ingest batches are) instead of nested DRF serializers: a
200-step plan would build and run hundreds of field objects per request, and the simulate
endpoints must stay cheap. It reports every problem at once, with the request's own paths
(`plan[0].iterations`), through DRF's ValidationError so the shared exception handler
renders the usual error body.
"""

import re
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from analytics.api.fields import AwareDateTimeField, TimeWindowFilterSerializer
from analytics.validators import (
    NOT_INTEGER,
    NOT_OBJECT,
    REQUIRED,
    Field,
    FieldInvalid,
    Fields,
    check_object,
    described,
    integer,
    is_number,
)
from costsim.models import Provenance, ProvenanceSource, Variant, Verdict
from costsim.services.estimators import DEFAULT_BUDGET_CENTS
from costsim.services.provenance import non_finite_number_path, unstorable_text_path

SKILL_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
# fullmatch, because "$" would also accept a trailing newline.
_SKILL_RE = re.compile(SKILL_PATTERN)
INPUT_HASH_RE = re.compile(r"\A[0-9a-f]{16}\Z")

MAX_PLAN_STEPS = 200
MAX_ALLOWED_SKILLS = 200
MAX_RUN_ID_LENGTH = 64
MAX_ITERATIONS = 100

# Params whose type the estimators rely on; every other key in `params` is free.
STRING_PARAMS = ("prompt", "url", "command")

NOT_STRING = "must be a string"
NOT_LIST = "must be a list"
BAD_SKILL = f"must match ^{SKILL_PATTERN}$"
UNSTORABLE_TEXT = "must not contain NUL characters or unpaired surrogates"
NOT_FINITE = "must be a finite number"


@dataclass(frozen=True)
class SimulationInput:
    """A validated simulation body.

    `plan` has every step completed with its defaults (params {}, iterations 1);
    `raw_plan` is the plan exactly as received, which is what provenance hashes.
    `allowed_skills` is None when the body omitted it or sent null.
    """

    plan: list[dict[str, Any]]
    raw_plan: list[Any]
    budget_cents: int
    allowed_skills: list[str] | None
    run_id: str | None


def _is_skill(value: Any) -> bool:
    return isinstance(value, str) and _SKILL_RE.fullmatch(value) is not None


@described(type="string", pattern=SKILL_PATTERN, nullable=False)
def _skill(value: Any) -> str:
    if value is None:
        raise FieldInvalid(REQUIRED)
    if not _is_skill(value):
        raise FieldInvalid(BAD_SKILL)
    return value


# A step naming a model and token counts is priced from the price catalogue (V2 only).
PRICED_NAME_PARAMS = ("model", "provider")
PRICED_TOKEN_PARAMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
MAX_STEP_TOKENS = 1_000_000_000
_PRICED_NAME = "must be a string of 1 to 64 characters"
_STEP_TOKENS = f"must be an integer between 0 and {MAX_STEP_TOKENS}"
_step_tokens = integer(minimum=0, maximum=MAX_STEP_TOKENS, message=_STEP_TOKENS)


@described(type="object", nullable=False)
def _params(value: Any) -> dict[str, Any]:
    """Free-form step params, except the few the estimators read."""
    if not isinstance(value, dict):
        raise FieldInvalid(NOT_OBJECT)
    nested = {**_typed_param_errors(value), **_priced_call_errors(value)}
    if nested:
        raise FieldInvalid(nested=nested)
    return value


def _typed_param_errors(params: dict[str, Any]) -> dict[str, list[str]]:
    nested = {
        f".{name}": [NOT_STRING]
        for name in STRING_PARAMS
        if name in params and not isinstance(params[name], str)
    }
    timeout = params.get("timeout")
    if "timeout" in params and not (is_number(timeout) and timeout > 0):
        nested[".timeout"] = ["must be a number greater than 0"]
    return nested


def _priced_call_errors(params: dict[str, Any]) -> dict[str, list[str]]:
    nested = {
        f".{name}": [_PRICED_NAME]
        for name in PRICED_NAME_PARAMS
        if name in params and not _is_priced_name(params[name])
    }
    bad_counts = {
        f".{name}": [_STEP_TOKENS]
        for name in PRICED_TOKEN_PARAMS
        if name in params and not _is_step_tokens(params[name])
    }
    if not bad_counts:
        counts = [params.get(name, 0) for name in PRICED_TOKEN_PARAMS]
        if counts[2] + counts[3] > counts[0]:
            bad_counts[".input_tokens"] = [
                "must be at least cache_read_tokens + cache_write_tokens (it counts them too)"
            ]
    return {**nested, **bad_counts}


def _is_priced_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


def _is_step_tokens(value: Any) -> bool:
    try:
        _step_tokens(value)
    except FieldInvalid:
        return False
    return True


STEP_FIELDS = Fields(
    Field("skill", _skill, required=True),
    Field("params", _params, default=dict),
    Field(
        "iterations",
        integer(
            minimum=1,
            maximum=MAX_ITERATIONS,
            null_message=NOT_INTEGER,
            range_message=f"must be between 1 and {MAX_ITERATIONS}",
        ),
        default=1,
    ),
)


@described(type="list", min_length=1, max_length=MAX_PLAN_STEPS, nullable=False)
def _plan(value: Any) -> list[dict[str, Any]]:
    """The steps completed with their defaults (params {}, iterations 1)."""
    if value is None:
        raise FieldInvalid(REQUIRED)
    if not isinstance(value, list):
        raise FieldInvalid(NOT_LIST)
    if not 1 <= len(value) <= MAX_PLAN_STEPS:
        raise FieldInvalid(f"must contain between 1 and {MAX_PLAN_STEPS} steps")
    plan: list[dict[str, Any]] = []
    nested: dict[str, list[str]] = {}
    for index, step in enumerate(value):
        if not isinstance(step, dict):
            nested[f"[{index}]"] = [NOT_OBJECT]
            continue
        completed, step_errors = check_object(step, STEP_FIELDS, path=f"[{index}]")
        nested.update(step_errors)
        plan.append(completed)
    if not nested:
        # Every step is well formed. Provenance stores the plan as received, and PostgreSQL
        # refuses NUL, unpaired surrogates and (`1e400` parses as infinity) non-finite numbers.
        bad_text = unstorable_text_path(value)
        if bad_text is not None:
            nested[_suffix(bad_text)] = [UNSTORABLE_TEXT]
        bad_number = non_finite_number_path(value)
        if bad_number is not None:
            nested[_suffix(bad_number)] = [NOT_FINITE]
    if nested:
        raise FieldInvalid(nested=nested)
    return plan


def _suffix(path: str) -> str:
    # The paths of a list start with its index; a bare key gets its dot.
    return path if path.startswith("[") else f".{path}"


@described(type="list", max_length=MAX_ALLOWED_SKILLS, pattern=SKILL_PATTERN, nullable=True)
def _allowed_skills(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise FieldInvalid(NOT_LIST)
    if len(value) > MAX_ALLOWED_SKILLS:
        raise FieldInvalid(f"must contain at most {MAX_ALLOWED_SKILLS} skills")
    nested = {
        f"[{index}]": [BAD_SKILL] for index, skill in enumerate(value) if not _is_skill(skill)
    }
    if nested:
        raise FieldInvalid(nested=nested)
    return value


@described(type="string", max_length=MAX_RUN_ID_LENGTH, nullable=True)
def _run_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldInvalid(NOT_STRING)
    if not value.strip():
        raise FieldInvalid("must not be blank")
    if len(value) > MAX_RUN_ID_LENGTH:
        raise FieldInvalid(f"must be at most {MAX_RUN_ID_LENGTH} characters")
    if unstorable_text_path(value) is not None:
        # Provenance stores run_id as received; PostgreSQL would refuse it.
        raise FieldInvalid(UNSTORABLE_TEXT)
    return value


BODY_FIELDS = Fields(
    Field("plan", _plan, required=True),
    Field(
        "budget_cents",
        integer(minimum=0, maximum=None, null_message=NOT_INTEGER),
        default=DEFAULT_BUDGET_CENTS,
    ),
    Field("allowed_skills", _allowed_skills),
    Field("run_id", _run_id),
)


def parse_simulation_body(data: Any) -> SimulationInput:
    """Validate a simulation body; raise ValidationError naming every bad field."""
    if not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["must be a JSON object"]})
    body, errors = check_object(data, BODY_FIELDS)
    if errors:
        raise serializers.ValidationError(errors)
    return SimulationInput(
        plan=body["plan"],
        raw_plan=data["plan"],
        budget_cents=body["budget_cents"],
        allowed_skills=body["allowed_skills"],
        run_id=body["run_id"],
    )


class SimulationStepSerializer(serializers.Serializer):
    """Documentation of a plan step; parse_simulation_body does the checking."""

    skill = serializers.RegexField(rf"^{SKILL_PATTERN}$")
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Free-form, except `prompt`, `url`, `command` (strings) and `timeout` "
        "(seconds). A step naming `model` (and optionally `provider`) with `input_tokens` "
        "and/or `output_tokens` (optionally `cache_read_tokens`, `cache_write_tokens`, parts "
        "of input_tokens) is priced by V2 from the price catalogue and the tenant's price "
        "overrides; V1 ignores them.",
    )
    iterations = serializers.IntegerField(min_value=1, max_value=MAX_ITERATIONS, default=1)


class SimulationBodySerializer(serializers.Serializer):
    """Documentation of the simulation body (OpenAPI only); see parse_simulation_body."""

    plan = SimulationStepSerializer(many=True, min_length=1, max_length=MAX_PLAN_STEPS)
    budget_cents = serializers.IntegerField(min_value=0, default=DEFAULT_BUDGET_CENTS)
    allowed_skills = serializers.ListField(
        child=serializers.RegexField(rf"^{SKILL_PATTERN}$"),
        max_length=MAX_ALLOWED_SKILLS,
        required=False,
        allow_null=True,
    )
    run_id = serializers.CharField(max_length=MAX_RUN_ID_LENGTH, required=False, allow_null=True)


class ProvenanceFilterSerializer(TimeWindowFilterSerializer):
    variant_slug = serializers.ChoiceField(choices=Variant.choices, required=False)
    source = serializers.ChoiceField(choices=ProvenanceSource.choices, required=False)
    input_hash = serializers.RegexField(
        INPUT_HASH_RE,
        required=False,
        error_messages={"invalid": "must be 16 lower-case hex characters"},
    )


class DriftStatsFilterSerializer(TimeWindowFilterSerializer):
    pass


class ProvenanceRowSerializer(serializers.ModelSerializer):
    """The provenance row view; payloads stay out of the API."""

    created_at = AwareDateTimeField(read_only=True)
    # The stored columns keep their first names; the API names every amount `*_cents`.
    v1_cost_cents = serializers.IntegerField(source="v1_cost", read_only=True, allow_null=True)
    v2_cost_cents = serializers.IntegerField(source="v2_cost", read_only=True, allow_null=True)
    cost_delta_cents = serializers.IntegerField(
        source="cost_delta", read_only=True, allow_null=True, help_text="V2 minus V1."
    )

    class Meta:
        model = Provenance
        fields = (
            "id",
            "run_id",
            "variant_slug",
            "source",
            "model_version",
            "adapter_version",
            "commit_sha",
            "input_hash",
            "output_hash",
            "v1_cost_cents",
            "v2_cost_cents",
            "cost_delta_cents",
            "drift_score",
            "verdict",
            "v2_status",
            "runtime_ms",
            "created_at",
        )
        read_only_fields = fields


class DriftStatsSerializer(serializers.Serializer):
    """Statistics of `cost_delta_cents` (V2 minus V1) over the rows with both costs."""

    total = serializers.IntegerField()
    avg_delta_cents = serializers.FloatField(source="avg_delta")
    min_delta_cents = serializers.FloatField(source="min_delta")
    max_delta_cents = serializers.FloatField(source="max_delta")
    stddev_delta_cents = serializers.FloatField(source="stddev_delta")


class SimulationStatusSerializer(serializers.Serializer):
    sandbox_enabled = serializers.BooleanField()
    circuit_breaker_open = serializers.BooleanField()
    model_version = serializers.CharField()
    adapter_version = serializers.CharField()
    drift_threshold = serializers.FloatField()
    consecutive_failures = serializers.IntegerField()
    disabled_until = AwareDateTimeField(allow_null=True)


# --- simulation results (OpenAPI only: the views answer with the engines' dictionaries) ---

V1_STATUSES = "`feasible`, `budget_insufficient`, `permission_denied` or `risk_too_high`"
V2_STATUSES = "`success` or `error` (budget, permissions or risk; see `warnings`)"


class V1StepEstimateSerializer(serializers.Serializer):
    step_index = serializers.IntegerField()
    skill_id = serializers.CharField()
    iterations = serializers.IntegerField()
    base_cost_cents = serializers.IntegerField()
    cost_cents = serializers.IntegerField()
    base_latency_ms = serializers.FloatField(help_text="An integer unless a timeout set it.")
    latency_ms = serializers.FloatField()
    risk_probability = serializers.FloatField(help_text="Per execution, not compounded.")
    risk_type = serializers.CharField()


class V1RiskSerializer(serializers.Serializer):
    step_index = serializers.IntegerField()
    skill_id = serializers.CharField()
    risk_type = serializers.CharField()
    probability = serializers.FloatField(help_text="Compounded over the iterations, 4 dp.")
    description = serializers.CharField()
    mitigation = serializers.CharField()


class V1AlternativeSerializer(serializers.Serializer):
    suggestion = serializers.CharField()
    potential_savings_cents = serializers.IntegerField()


class V1MetadataSerializer(serializers.Serializer):
    plan_steps = serializers.IntegerField()
    cumulative_risk = serializers.FloatField()
    budget_utilization = serializers.FloatField(help_text="Cost over budget, 4 dp.")


class V1ResultSerializer(serializers.Serializer):
    """The authoritative V1 estimate of a plan."""

    feasible = serializers.BooleanField()
    status = serializers.CharField(help_text=V1_STATUSES)
    estimated_cost_cents = serializers.IntegerField()
    estimated_duration_ms = serializers.FloatField(help_text="An integer unless a timeout set it.")
    budget_remaining_cents = serializers.IntegerField()
    budget_sufficient = serializers.BooleanField()
    permission_gaps = serializers.ListField(
        child=serializers.CharField(), help_text="Skills of the plan outside `allowed_skills`."
    )
    risks = V1RiskSerializer(many=True)
    step_estimates = V1StepEstimateSerializer(many=True)
    alternatives = V1AlternativeSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    metadata = V1MetadataSerializer()


class V2StepEstimateSerializer(serializers.Serializer):
    step_index = serializers.IntegerField()
    skill_id = serializers.CharField()
    iterations = serializers.IntegerField()
    cost_cents = serializers.FloatField(help_text="2 dp.")
    latency_ms = serializers.FloatField(help_text="2 dp.")
    confidence = serializers.FloatField(help_text="Per execution, 4 dp.")


class V2RiskSerializer(serializers.Serializer):
    step_index = serializers.IntegerField()
    skill_id = serializers.CharField()
    risk_type = serializers.CharField()
    probability = serializers.FloatField(help_text="Compounded over the iterations, 4 dp.")


class V2MetadataSerializer(V1MetadataSerializer):
    adapter_version = serializers.CharField()
    commit_sha = serializers.CharField()


class V2ResultSerializer(serializers.Serializer):
    """The V2 (shadow) estimate of a plan, with its confidence."""

    feasible = serializers.BooleanField()
    status = serializers.CharField(help_text=V2_STATUSES)
    estimated_cost_cents = serializers.IntegerField()
    estimated_duration_ms = serializers.IntegerField()
    budget_remaining_cents = serializers.IntegerField()
    confidence_score = serializers.FloatField()
    model_version = serializers.CharField()
    step_estimates = V2StepEstimateSerializer(many=True)
    risks = V2RiskSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    metadata = V2MetadataSerializer()
    runtime_ms = serializers.IntegerField()
    output_hash = serializers.CharField(help_text="SHA-256 of the deterministic part.")


class ComparisonDetailsSerializer(serializers.Serializer):
    v1_status = serializers.CharField()
    v2_status = serializers.CharField()
    v2_confidence = serializers.FloatField()
    v1_risks_count = serializers.IntegerField()
    v2_risks_count = serializers.IntegerField()


class ComparisonSerializer(serializers.Serializer):
    """V2 against V1 for the same plan; deltas are V2 minus V1."""

    verdict = serializers.ChoiceField(choices=Verdict.choices)
    v1_cost_cents = serializers.IntegerField()
    v2_cost_cents = serializers.IntegerField()
    cost_delta_cents = serializers.IntegerField()
    cost_delta_pct = serializers.FloatField(help_text="|delta| / max(V1 cost, 1), 4 dp.")
    v1_duration_ms = serializers.FloatField()
    v2_duration_ms = serializers.IntegerField()
    duration_delta_ms = serializers.FloatField()
    v1_feasible = serializers.BooleanField()
    v2_feasible = serializers.BooleanField()
    feasibility_match = serializers.BooleanField()
    drift_score = serializers.FloatField(help_text="0 to 1, 4 dp.")
    details = ComparisonDetailsSerializer()


class SimulationResultSerializer(serializers.Serializer):
    """`/costsim/simulate/`: V1 answers; V2 and the comparison only when V2 ran in shadow."""

    v1 = V1ResultSerializer()
    v2 = V2ResultSerializer(allow_null=True)
    comparison = ComparisonSerializer(allow_null=True)
    sandbox_enabled = serializers.BooleanField()
    v2_error = serializers.CharField(
        allow_null=True, help_text="Why V2 did not answer, or the breaker trip it caused."
    )


class SimulationV2ResultSerializer(serializers.Serializer):
    """`/costsim/v2/simulate/`: V2 and its comparison with V1, whatever the sandbox says."""

    v2 = V2ResultSerializer()
    comparison = ComparisonSerializer()
