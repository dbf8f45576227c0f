"""Plan cost estimators: V1 (authoritative) and V2 (shadow, with confidence).

Both engines are pure and deterministic: a plan, a budget and an optional skill allowlist
go in, a frozen result comes out. Plans are validated by the API before they get here;
the estimators only read ``skill``, ``params`` and ``iterations`` from each step and accept
an empty plan (the reference datasets use one).

Money is in cents and time in milliseconds. Rounding is Python's built-in ``round``
(half-to-even on the binary double), applied only where a result is documented as rounded.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from analytics.hashing import sha256_hex
from analytics.services.price_catalog import OverrideRule, cell_for, cost_cents, price_cells

# Recorded with results so provenance and golden files say which engine produced them.
V1_ENGINE_VERSION = "1.0.0"
# Default of COSTSIM_MODEL_VERSION / COSTSIM_ADAPTER_VERSION. A change to any V2
# coefficient needs a new model version and regenerated golden files.
V2_MODEL_VERSION = "2.0.0"
V2_ADAPTER_VERSION = "2.0.0"

DEFAULT_BUDGET_CENTS = 1000
# Cumulative risk strictly above this makes a plan infeasible, in both engines.
RISK_THRESHOLD = 0.5
EMPTY_PLAN_WARNING = "Empty plan provided"

# A risk is listed in a V1 result only when its per-execution probability is above this.
V1_RISK_REPORT_MIN = 0.05
# A V2 risk factor is collected (and counts towards cumulative risk) only above this.
V2_RISK_COLLECT_MIN = 0.02


@dataclass(frozen=True)
class V1Skill:
    cost_cents: int
    latency_ms: int
    risk_probability: float
    risk_type: str


V1_SKILLS: dict[str, V1Skill] = {
    "http_call": V1Skill(0, 500, 0.10, "timeout"),
    "llm_invoke": V1Skill(5, 2000, 0.05, "rate_limit"),
    "json_transform": V1Skill(0, 10, 0.01, "transform_error"),
    "fs_read": V1Skill(0, 50, 0.05, "not_found"),
    "fs_write": V1Skill(0, 100, 0.05, "permission"),
    "shell_lite": V1Skill(0, 200, 0.10, "timeout"),
    "kv_get": V1Skill(0, 5, 0.02, "not_found"),
    "kv_set": V1Skill(0, 10, 0.02, "quota"),
    "webhook_send": V1Skill(0, 300, 0.10, "timeout"),
    "email_send": V1Skill(1, 500, 0.05, "delivery"),
}
V1_UNKNOWN_SKILL = V1Skill(10, 1000, 0.20, "unknown")

V1_MITIGATIONS: dict[str, str] = {
    "timeout": "Add retry with exponential backoff",
    "rate_limit": "Implement client-side throttling",
    "transform_error": "Validate input schema before transform",
    "not_found": "Add existence check before access",
    "permission": "Verify permissions before write",
    "quota": "Check quota before operation",
    "delivery": "Use delivery confirmation",
    "unknown": "Add error handling and monitoring",
}


@dataclass(frozen=True)
class V2Skill:
    cost_cents: float
    latency_ms: float
    confidence: float
    # risk_type -> per-execution probability; every row has exactly one factor.
    risk_factors: tuple[tuple[str, float], ...]


V2_SKILLS: dict[str, V2Skill] = {
    # The 350 ms base of http_call never survives: its latency is always derived from the
    # timeout (default 30 s, capped at 500 ms).
    "http_call": V2Skill(0.0, 350.0, 0.85, (("timeout", 0.08),)),
    "llm_invoke": V2Skill(3.5, 1800.0, 0.92, (("rate_limit", 0.03),)),
    "json_transform": V2Skill(0.0, 5.0, 0.98, (("transform_error", 0.005),)),
    "fs_read": V2Skill(0.0, 30.0, 0.95, (("read", 0.03),)),
    "fs_write": V2Skill(0.0, 50.0, 0.94, (("write", 0.02),)),
    "shell_lite": V2Skill(0.0, 150.0, 0.88, (("timeout", 0.07),)),
    "kv_get": V2Skill(0.0, 3.0, 0.97, (("get", 0.01),)),
    "kv_set": V2Skill(0.0, 5.0, 0.97, (("set", 0.01),)),
    "webhook_send": V2Skill(0.0, 200.0, 0.90, (("timeout", 0.08),)),
    "email_send": V2Skill(0.8, 350.0, 0.93, (("delivery", 0.03),)),
}
V2_UNKNOWN_SKILL = V2Skill(5.0, 500.0, 0.60, (("unknown", 0.15),))

# URLs that do not pay the external-network penalty in V2.
V2_LOCAL_URL_PREFIXES = ("http://localhost", "http://127.0.0.1")
V2_DEFAULT_HTTP_TIMEOUT_S = 30

# A V2 step whose params name a `model` and token counts is an LLM call of known size: its
# cost per execution is the price of those tokens (the price catalogue and the tenant's
# overrides, as ingest prices records), not the skill table's. `provider` and the cache
# counts are optional; input_tokens counts cached tokens too.
PRICED_TOKEN_PARAMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _allowlist(allowed_skills: Sequence[str] | None) -> frozenset[str] | None:
    """Return the allowlist in force, or None: an empty list restricts nothing."""
    if not allowed_skills:
        return None
    return frozenset(allowed_skills)


def _budget_utilization(cost_cents: int, budget_cents: int) -> float:
    # A zero budget divides by 1 so that any cost still shows as over-utilisation.
    return round(cost_cents / max(budget_cents, 1), 4)


# V1 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class V1StepEstimate:
    step_index: int
    skill_id: str
    iterations: int
    base_cost_cents: int
    cost_cents: int
    base_latency_ms: int | float
    latency_ms: int | float
    risk_probability: float  # per execution, not compounded
    risk_type: str


@dataclass(frozen=True)
class V1Risk:
    step_index: int
    skill_id: str
    risk_type: str
    probability: float  # compounded over the iterations, 4 dp
    description: str
    mitigation: str


@dataclass(frozen=True)
class V1Alternative:
    suggestion: str
    potential_savings_cents: int


@dataclass(frozen=True)
class V1Result:
    feasible: bool
    status: str
    estimated_cost_cents: int
    # An int, or a float as soon as one step latency is a float (http_call with a timeout).
    estimated_duration_ms: int | float
    budget_remaining_cents: int
    budget_sufficient: bool
    permission_gaps: list[str]
    risks: list[V1Risk]
    step_estimates: list[V1StepEstimate]
    alternatives: list[V1Alternative]
    warnings: list[str]
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the V1 result in its JSON shape."""
        return asdict(self)


# complexity: the V1 table's per-step rules (prompt and timeout prices, risk, permissions, LLM
# share) in one pass; the golden files pin every figure it returns
def estimate_v1(
    plan: Sequence[dict[str, Any]],
    *,
    budget_cents: int = DEFAULT_BUDGET_CENTS,
    allowed_skills: Sequence[str] | None = None,
) -> V1Result:
    """Estimate a plan with the authoritative V1 table."""
    if not plan:
        return V1Result(
            feasible=False,
            status="invalid_plan",
            estimated_cost_cents=0,
            estimated_duration_ms=0,
            budget_remaining_cents=budget_cents,
            budget_sufficient=True,
            permission_gaps=[],
            risks=[],
            step_estimates=[],
            alternatives=[],
            warnings=[EMPTY_PLAN_WARNING],
            metadata={},
        )

    allowlist = _allowlist(allowed_skills)
    steps: list[V1StepEstimate] = []
    risks: list[V1Risk] = []
    gaps: list[str] = []
    cumulative_risk = 0.0
    llm_cost_cents = 0

    for index, step in enumerate(plan):
        skill = step["skill"]
        params = step.get("params") or {}
        iterations = step.get("iterations", 1)
        row = V1_SKILLS.get(skill, V1_UNKNOWN_SKILL)

        base_cost: int = row.cost_cents
        base_latency: int | float = row.latency_ms
        if skill == "llm_invoke" and "prompt" in params:
            # One cent per thousand prompt characters, never below the table price.
            base_cost = max(row.cost_cents, len(params["prompt"]) // 1000)
        if skill == "http_call" and "timeout" in params:
            # The timeout is in seconds; the latency is capped at the table's 500 ms and is a
            # float whatever the type of the timeout.
            base_latency = float(min(row.latency_ms, params["timeout"] * 1000))

        cost = base_cost * iterations
        latency = base_latency * iterations
        compounded = 1 - (1 - row.risk_probability) ** iterations
        # Every step counts towards the cumulative risk, reported or not.
        cumulative_risk = 1 - (1 - cumulative_risk) * (1 - compounded)

        steps.append(
            V1StepEstimate(
                step_index=index,
                skill_id=skill,
                iterations=iterations,
                base_cost_cents=base_cost,
                cost_cents=cost,
                base_latency_ms=base_latency,
                latency_ms=latency,
                risk_probability=row.risk_probability,
                risk_type=row.risk_type,
            )
        )
        if row.risk_probability > V1_RISK_REPORT_MIN:
            risks.append(
                V1Risk(
                    step_index=index,
                    skill_id=skill,
                    risk_type=row.risk_type,
                    probability=round(compounded, 4),
                    description=(
                        f"{skill} x{iterations} has {round(100 * compounded)}% chance of "
                        f"{row.risk_type}"
                    ),
                    mitigation=V1_MITIGATIONS[row.risk_type],
                )
            )
        if allowlist is not None and skill not in allowlist:
            gaps.append(skill)
        if skill == "llm_invoke":
            llm_cost_cents += cost

    cost_cents = sum(s.cost_cents for s in steps)
    # Steps run one after another; sum() keeps ints as ints and turns float on any float.
    duration_ms = sum(s.latency_ms for s in steps)

    warnings: list[str] = []
    alternatives: list[V1Alternative] = []
    if cost_cents > budget_cents:
        status = "budget_insufficient"
        alternatives.append(V1Alternative("Reduce LLM calls", llm_cost_cents))
    elif gaps:
        status = "permission_denied"
    elif cumulative_risk > RISK_THRESHOLD:
        status = "risk_too_high"
        warnings.append(
            f"Cumulative risk {round(100 * cumulative_risk)}% exceeds threshold "
            f"{round(100 * RISK_THRESHOLD)}%"
        )
    else:
        status = "feasible"

    return V1Result(
        feasible=status == "feasible",
        status=status,
        estimated_cost_cents=cost_cents,
        estimated_duration_ms=duration_ms,
        budget_remaining_cents=budget_cents - cost_cents,
        budget_sufficient=cost_cents <= budget_cents,
        permission_gaps=gaps,
        risks=risks,
        step_estimates=steps,
        alternatives=alternatives,
        warnings=warnings,
        metadata={
            "plan_steps": len(plan),
            "cumulative_risk": round(cumulative_risk, 6),
            "budget_utilization": _budget_utilization(cost_cents, budget_cents),
        },
    )


# V2 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class V2StepEstimate:
    step_index: int
    skill_id: str
    iterations: int
    cost_cents: float  # 2 dp, always a float (0.0, 3.56)
    latency_ms: float  # 2 dp, always a float (500.0)
    confidence: float  # per execution, not compounded over iterations; 4 dp


@dataclass(frozen=True)
class V2Risk:
    step_index: int
    skill_id: str
    risk_type: str
    probability: float  # compounded over the iterations, 4 dp


@dataclass(frozen=True)
class V2Result:
    feasible: bool
    status: str
    estimated_cost_cents: int
    estimated_duration_ms: int
    budget_remaining_cents: int
    confidence_score: float
    model_version: str
    step_estimates: list[V2StepEstimate]
    risks: list[V2Risk]
    warnings: list[str]
    metadata: dict[str, Any]
    runtime_ms: int
    output_hash: str

    def to_dict(self) -> dict[str, Any]:
        """Return the V2 result in its JSON shape."""
        return asdict(self)


def v2_output_hash(
    *,
    feasible: bool,
    status: str,
    estimated_cost_cents: int,
    estimated_duration_ms: int,
    step_estimates: Sequence[V2StepEstimate],
) -> str:
    """Return the 64-hex digest of the deterministic part of a V2 result.

    ``runtime_ms`` and ``metadata`` (versions, commit) are left out, so the same plan,
    budget and allowlist always hash the same on any deployment.

    Each step is its instance ``__dict__``, equal to ``asdict(step)`` for this flat
    dataclass of scalars but without asdict's recursive deep copy, which cost more than
    the rest of the V2 run. The dicts are only serialised, never changed.
    """
    return sha256_hex(
        {
            "feasible": feasible,
            "status": status,
            "estimated_cost_cents": estimated_cost_cents,
            "estimated_duration_ms": estimated_duration_ms,
            "step_estimates": [vars(s) for s in step_estimates],
        }
    )


@dataclass(frozen=True)
class _V2Execution:
    """One execution of a step after the per-skill adjustments, unrounded."""

    cost_cents: float
    latency_ms: float
    confidence: float
    risk_factors: tuple[tuple[str, float], ...]


# complexity: one branch per skill with its own cost and latency model
def _v2_execution(skill: str, params: dict[str, Any]) -> _V2Execution:
    row = V2_SKILLS.get(skill, V2_UNKNOWN_SKILL)
    cost = row.cost_cents
    latency = row.latency_ms
    confidence = row.confidence
    factors = row.risk_factors

    if skill == "llm_invoke":
        # Output is assumed to be twice the prompt, at most 4000 characters; prices are per
        # thousand characters (0.8 cents in, 1.2 cents out) and 200 ms per thousand in.
        prompt_chars = len(params.get("prompt") or "")
        output_chars = min(2 * prompt_chars, 4000)
        cost += (prompt_chars / 1000) * 0.8 + (output_chars / 1000) * 1.2
        latency += (prompt_chars / 1000) * 200
        if prompt_chars > 2000:
            confidence *= 0.95
        if prompt_chars > 4000:
            confidence *= 0.90
    elif skill == "http_call":
        # The timeout is in seconds; the estimate is the timeout capped at 500 ms.
        timeout_s = params.get("timeout", V2_DEFAULT_HTTP_TIMEOUT_S)
        latency = float(min(500, timeout_s * 1000))
        # A missing url is treated as external.
        if not (params.get("url") or "").startswith(V2_LOCAL_URL_PREFIXES):
            factors = tuple((name, p * 1.5) for name, p in factors)
            confidence *= 0.95
    elif skill == "shell_lite" and len(params.get("command") or "") > 100:
        factors = tuple((name, p * 1.2) for name, p in factors)
        confidence *= 0.95

    return _V2Execution(cost, latency, confidence, factors)


def names_priced_call(params: dict[str, Any]) -> bool:
    """True when a step's params name a model and at least one token count."""
    return "model" in params and ("input_tokens" in params or "output_tokens" in params)


def _priced_steps(
    plan: Sequence[dict[str, Any]], overrides: Sequence[OverrideRule], at: datetime
) -> tuple[dict[int, float], list[str]]:
    """Per-execution cents of the plan's steps that name a model and token counts, by step
    index, and a warning per step whose model nobody prices (that step keeps the table)."""
    calls = {
        index: step["params"]
        for index, step in enumerate(plan)
        if names_priced_call(step.get("params") or {})
    }
    if not calls:
        return {}, []
    keys = sorted({(p["model"], p.get("provider")) for p in calls.values()}, key=str)
    cells = price_cells(keys, overrides)
    costs: dict[int, float] = {}
    warnings: list[str] = []
    for index, params in calls.items():
        tokens = {name: params.get(name, 0) for name in PRICED_TOKEN_PARAMS}
        cell = cell_for(
            cells,
            model=params["model"],
            provider=params.get("provider"),
            at=at,
            input_tokens=tokens["input_tokens"],
        )
        cents = cost_cents(cell.rate if cell else None, **tokens)
        if cents is None:
            warnings.append(
                f"Model '{params['model']}' of step {index} has no price: estimated from the "
                "skill table"
            )
        else:
            costs[index] = float(cents)
    return costs, warnings


# complexity: V2's per-step rules (priced calls, coefficients, risk, permissions, budget) in one
# pass; the golden files pin every figure it returns
def estimate_v2(
    plan: Sequence[dict[str, Any]],
    *,
    budget_cents: int = DEFAULT_BUDGET_CENTS,
    allowed_skills: Sequence[str] | None = None,
    model_version: str = V2_MODEL_VERSION,
    adapter_version: str = V2_ADAPTER_VERSION,
    commit_sha: str = "unknown",
    price_overrides: Sequence[OverrideRule] = (),
    priced_at: datetime | None = None,
) -> V2Result:
    """Estimate a plan with the V2 coefficients.

    A step naming a model and token counts (PRICED_TOKEN_PARAMS) costs, per execution, the
    price of those tokens at `priced_at` (default: now) from the price catalogue and
    `price_overrides` (the tenant's). ``runtime_ms`` is measured on the monotonic clock;
    everything else is deterministic for a given `priced_at`.
    """
    started = time.monotonic()

    if not plan:
        status = "schema_error"
        output_hash = v2_output_hash(
            feasible=False,
            status=status,
            estimated_cost_cents=0,
            estimated_duration_ms=0,
            step_estimates=[],
        )
        return V2Result(
            feasible=False,
            status=status,
            estimated_cost_cents=0,
            estimated_duration_ms=0,
            budget_remaining_cents=budget_cents,
            confidence_score=0.0,
            model_version=model_version,
            step_estimates=[],
            risks=[],
            warnings=[EMPTY_PLAN_WARNING],
            metadata={},
            runtime_ms=_elapsed_ms(started),
            output_hash=output_hash,
        )

    allowlist = _allowlist(allowed_skills)
    priced, pricing_warnings = _priced_steps(
        plan, price_overrides, priced_at or datetime.now(tz=UTC)
    )
    steps: list[V2StepEstimate] = []
    risks: list[V2Risk] = []
    gaps: list[str] = []
    # Totals are summed unrounded and rounded once at the end, so per-step 2 dp rounding
    # never accumulates into the plan figures.
    cost_sum = 0.0
    latency_sum = 0.0
    confidence_product = 1.0
    survival = 1.0  # product of (1 - compounded p) over the collected risks

    for index, step in enumerate(plan):
        skill = step["skill"]
        params = step.get("params") or {}
        iterations = step.get("iterations", 1)
        execution = _v2_execution(skill, params)
        if index in priced:
            execution = _V2Execution(
                priced[index], execution.latency_ms, execution.confidence, execution.risk_factors
            )

        step_cost = execution.cost_cents * iterations
        step_latency = execution.latency_ms * iterations
        cost_sum += step_cost
        latency_sum += step_latency
        confidence_product *= execution.confidence

        steps.append(
            V2StepEstimate(
                step_index=index,
                skill_id=skill,
                iterations=iterations,
                cost_cents=float(round(step_cost, 2)),
                latency_ms=float(round(step_latency, 2)),
                confidence=round(execution.confidence, 4),
            )
        )
        for risk_type, probability in execution.risk_factors:
            if probability > V2_RISK_COLLECT_MIN:
                compounded = 1 - (1 - probability) ** iterations
                survival *= 1 - compounded
                risks.append(
                    V2Risk(
                        step_index=index,
                        skill_id=skill,
                        risk_type=risk_type,
                        probability=round(compounded, 4),
                    )
                )
        if allowlist is not None and skill not in allowlist:
            gaps.append(skill)

    cost_cents = round(cost_sum)
    duration_ms = round(latency_sum)
    cumulative_risk = 1 - survival

    if cost_cents > budget_cents:
        status = "error"
        warnings = [f"Budget insufficient: need {cost_cents} cents, have {budget_cents}"]
    elif gaps:
        status = "error"
        quoted = ", ".join(f"'{skill}'" for skill in gaps)
        warnings = [f"Permission denied for skills: [{quoted}]"]
    elif cumulative_risk > RISK_THRESHOLD:
        status = "error"
        warnings = [f"Risk too high: {100 * cumulative_risk:.1f}% > {100 * RISK_THRESHOLD:.1f}%"]
    else:
        status = "success"
        warnings = []
    warnings += pricing_warnings
    feasible = status == "success"

    output_hash = v2_output_hash(
        feasible=feasible,
        status=status,
        estimated_cost_cents=cost_cents,
        estimated_duration_ms=duration_ms,
        step_estimates=steps,
    )
    return V2Result(
        feasible=feasible,
        status=status,
        estimated_cost_cents=cost_cents,
        estimated_duration_ms=duration_ms,
        budget_remaining_cents=budget_cents - cost_cents,
        confidence_score=round(confidence_product, 4),
        model_version=model_version,
        step_estimates=steps,
        risks=risks,
        warnings=warnings,
        metadata={
            "plan_steps": len(plan),
            "cumulative_risk": round(cumulative_risk, 4),
            "budget_utilization": _budget_utilization(cost_cents, budget_cents),
            "adapter_version": adapter_version,
            "commit_sha": commit_sha,
        },
        runtime_ms=_elapsed_ms(started),
        output_hash=output_hash,
    )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
