"""Simulation entry points: V1 authoritative, V2 in shadow.

V1 answers every request and its result is never altered by the shadow step. The shadow
step (V2, comparison, breaker report, provenance) may fail in any way; on
`/costsim/simulate/` such a failure only fills `v2_error`.

Time bound of the shadow step: V2 is pure and linear in the plan (at most 200 steps;
`iterations` multiplies, it does not loop, and prompt lengths are only measured): about
0.1 ms per step on a loaded 2-vCPU host, so under 20 ms for the largest plan the API
accepts and well under 1 ms for typical plans. The database work around it is the
breaker check (one unlocked read), the breaker reports that change its state (single-row
transactions under the row lock; the breaker skips those that cannot change anything,
using the check's reading) and one provenance INSERT. Nothing waits on the network or on
another service.
"""

import logging
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection

from analytics.models import Tenant
from analytics.selectors.pricing import override_rules
from analytics.selectors.tenancy import API_KEY_GENERATION_SQL
from costsim import metrics
from costsim.models import BREAKER_NAME, BreakerIncident, ProvenanceSource
from costsim.selectors import BreakerSnapshot, circuit_breaker_snapshot_sql
from costsim.services import breaker, estimators
from costsim.services.drift import Comparison, compare
from costsim.services.estimators import V1Result, V2Result
from costsim.services.provenance import (
    SteadyWrite,
    provenance_input_json,
    provenance_record,
    provenance_record_if_steady,
)

logger = logging.getLogger(__name__)

V2_DISABLED_MESSAGE = "V2 disabled by circuit breaker"
TRIPPED_MESSAGE = "Circuit breaker tripped: {reason}"
SCHEMA_ERROR = "schema_error"


def result_dict(value: Any) -> Any:
    """Return an estimator result (or comparison) as plain JSON-ready data.

    Equal to `value.to_dict()`, without dataclasses.asdict's deep copy of every leaf:
    the results are frozen and freshly built, and the copy costs more than the V2 run
    itself on the hot path. Only containers are rebuilt; scalars are shared, and tested
    inline so that the many scalar leaves cost no function call.
    """
    if _is_dataclass(value):
        return _fields(value.__dict__)
    return _plain(value)


def _is_dataclass(value: Any) -> bool:
    return hasattr(type(value), "__dataclass_fields__")


def _fields(mapping: dict) -> dict:
    return {key: item if type(item) in _SCALARS else _plain(item) for key, item in mapping.items()}


def _plain(item: Any) -> Any:
    kind = type(item)
    if kind in _SCALARS:
        return item
    if kind is list:
        return [element if type(element) in _SCALARS else _plain(element) for element in item]
    if kind is dict:
        return _fields(item)
    if _is_dataclass(item):
        return _fields(item.__dict__)
    return item


_SCALARS = frozenset({str, int, float, bool, type(None)})


def simulate_v1(
    *, plan: list[dict[str, Any]], budget_cents: int, allowed_skills: list[str] | None
) -> dict[str, Any]:
    """Return the V1 result only (`/costsim/v1/simulate/`): no provenance, no breaker."""
    return result_dict(
        estimators.estimate_v1(plan, budget_cents=budget_cents, allowed_skills=allowed_skills)
    )


class KeyGenerationChanged(Exception):
    """The API key generation moved since the caller's key was cached; nothing was written.

    The caller checks the key again (it may have been revoked) and, if it is still usable,
    simulates again without `key_generation`.
    """


# complexity: the one-statement path of a steady breaker and the long path share the answer and its
# never-raise error handling; apart, each would repeat both
def simulate(
    *,
    tenant: Tenant,
    plan: list[dict[str, Any]],
    budget_cents: int,
    allowed_skills: list[str] | None,
    run_id: str | None,
    raw_plan: list[Any] | None = None,
    breaker_seen: BreakerSnapshot | None = None,
    key_generation: int | None = None,
) -> dict[str, Any]:
    """Run V1, and V2 in shadow when the sandbox is on and the breaker closed.

    Return `{v1, v2, comparison, sandbox_enabled, v2_error}`. Never raises because of V2,
    the breaker or provenance: the exception's message becomes `v2_error` and whatever V2
    result or comparison exists is still returned. `raw_plan` is the plan as the client
    sent it (defaults to `plan`); provenance hashes that one. `breaker_seen` is a reading of
    the breaker row taken earlier in the same request, used instead of reading it again.

    `key_generation` is the API key generation under which the caller's key was cached and
    not yet checked in this request. The first statement reads the generation with
    whatever else it reads, and raises KeyGenerationChanged, before anything is written or
    reported, when it moved.

    When the breaker was steady at this process's last reading (breaker.breaker_probably_
    steady) and V2's result is one whose reports change nothing, the check, both reports
    and the provenance row are one statement (provenance_record_if_steady), which writes
    only if the breaker is still steady. Otherwise, or when that statement found the
    breaker changed, the check, the reports and the INSERT run one after the other.
    """
    v1 = estimators.estimate_v1(plan, budget_cents=budget_cents, allowed_skills=allowed_skills)
    response: dict[str, Any] = {
        "v1": result_dict(v1),
        "v2": None,
        "comparison": None,
        "sandbox_enabled": False,
        "v2_error": None,
    }
    if not settings.COSTSIM_V2_SANDBOX:
        if key_generation is not None:
            _check_key_generation(key_generation)
        return response
    raw_plan = plan if raw_plan is None else raw_plan
    shadow = _Shadow(tenant=tenant, run_id=run_id)
    have_reading = breaker_seen is not None
    if not have_reading and breaker.breaker_probably_steady():
        shadow.estimate(plan=plan, v1=v1, budget_cents=budget_cents, allowed_skills=allowed_skills)
        if shadow.reports_change_nothing() and settings.COSTSIM_PROVENANCE_ENABLED:
            try:
                written = shadow.record_if_steady(
                    v1=v1,
                    raw_plan=raw_plan,
                    budget_cents=budget_cents,
                    allowed_skills=allowed_skills,
                    key_generation=key_generation,
                )
            except Exception as exc:
                # As a failed check: the breaker state is unknown, so V2 is not reported.
                logger.exception("Circuit breaker check failed; V2 shadow skipped")
                response["sandbox_enabled"] = True
                response["v2_error"] = str(exc) or type(exc).__name__
                return response
            if written.breaker is not None:
                breaker.breaker_remember(written.breaker)
                if key_generation is not None and written.key_generation != key_generation:
                    raise KeyGenerationChanged
                key_generation = None
                have_reading = True
            breaker_seen = written.breaker
            if written.row_id is not None:
                response["sandbox_enabled"] = True
                shadow.fill(response)
                return response
    try:
        if not have_reading:
            breaker_seen = _breaker_reading(key_generation)
        seen = breaker.breaker_check(seen=breaker_seen)
    except KeyGenerationChanged:
        raise
    except Exception as exc:
        # The breaker state is unknown, so V2 stays off for this request.
        logger.exception("Circuit breaker check failed; V2 shadow skipped")
        response["sandbox_enabled"] = True
        response["v2_error"] = str(exc) or type(exc).__name__
        return response
    breaker.breaker_remember(seen)
    if seen.disabled:
        response["v2_error"] = V2_DISABLED_MESSAGE
        return response

    response["sandbox_enabled"] = True
    shadow.seen = seen
    try:
        shadow.run(
            v1=v1,
            plan=plan,
            budget_cents=budget_cents,
            allowed_skills=allowed_skills,
            raw_plan=raw_plan,
        )
    except Exception as exc:
        logger.exception("V2 shadow step failed (tenant %s)", tenant.slug)
        response["v2_error"] = str(exc) or type(exc).__name__
    else:
        if shadow.incident is not None:
            response["v2_error"] = TRIPPED_MESSAGE.format(reason=shadow.incident.reason)
    shadow.fill(response)
    return response


def _breaker_reading(key_generation: int | None) -> BreakerSnapshot | None:
    """With `key_generation`, the breaker row (None when missing) read in one statement with
    the key generation, raising KeyGenerationChanged when it moved. Without, None: the
    breaker's check reads the row itself."""
    if key_generation is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_generation_and_breaker_sql(), [BREAKER_NAME])
        row = cursor.fetchone()
    if row is None:
        # No breaker row (a flushed database): the generation on its own.
        _check_key_generation(key_generation)
        return None
    if row[0] != key_generation:
        raise KeyGenerationChanged
    return BreakerSnapshot(*row[1:])


def _check_key_generation(key_generation: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(API_KEY_GENERATION_SQL)
        row = cursor.fetchone()
    if row is None or row[0] != key_generation:
        raise KeyGenerationChanged


@cache
def _generation_and_breaker_sql() -> str:
    # The breaker's own SELECT with the generation as a first column: the cheapest form for
    # the planner (a join with the breaker row cost PostgreSQL twice as much).
    columns_and_rest = circuit_breaker_snapshot_sql().removeprefix("SELECT ")
    return f"SELECT ({API_KEY_GENERATION_SQL}), {columns_and_rest}"


def generation_and_breaker_read() -> tuple[int | None, BreakerSnapshot] | None:
    """(API key generation, breaker row) in one statement, or None without a breaker row.

    The breaker reading is kept as this process's guess (breaker_remember).
    """
    with connection.cursor() as cursor:
        cursor.execute(_generation_and_breaker_sql(), [BREAKER_NAME])
        row = cursor.fetchone()
    if row is None:
        return None
    seen = BreakerSnapshot(*row[1:])
    breaker.breaker_remember(seen)
    return row[0], seen


def simulate_v2_explicit(
    *,
    tenant: Tenant,
    plan: list[dict[str, Any]],
    budget_cents: int,
    allowed_skills: list[str] | None,
    run_id: str | None,
    raw_plan: list[Any] | None = None,
) -> dict[str, Any]:
    """Run V2 and V1 whatever the sandbox flag and breaker say; return `{v2, comparison}`.

    Writes provenance (source `api`) and records metrics, but does not report to the
    breaker: explicit calls are diagnostics, not shadow traffic. Exceptions propagate.
    """
    v1 = estimators.estimate_v1(plan, budget_cents=budget_cents, allowed_skills=allowed_skills)
    shadow = _Shadow(tenant=tenant, run_id=run_id, source=ProvenanceSource.API, report=False)
    try:
        shadow.run(
            v1=v1,
            plan=plan,
            budget_cents=budget_cents,
            allowed_skills=allowed_skills,
            raw_plan=plan if raw_plan is None else raw_plan,
        )
    finally:
        shadow.record_metrics()
    return {"v2": shadow.v2_output, "comparison": result_dict(shadow.comparison)}


def _prices_a_call(plan: list[dict[str, Any]]) -> bool:
    return any(estimators.names_priced_call(step.get("params") or {}) for step in plan)


class _Shadow:
    """One V2 run against an existing V1 result; keeps what it got as far as it got."""

    def __init__(
        self,
        *,
        tenant: Tenant,
        run_id: str | None,
        source: str = ProvenanceSource.SANDBOX,
        report: bool = True,
        seen: BreakerSnapshot | None = None,
    ):
        self.tenant = tenant
        # The breaker check of this request, handed to the reports (see breaker.py).
        self.seen = seen
        self.run_id = run_id
        self.source = source
        self.report = report
        self.estimated = False
        self.error: Exception | None = None  # what estimate_v2 raised
        self.v2: V2Result | None = None
        self.v2_output: dict[str, Any] | None = None  # result_dict(v2), built once
        self.comparison: Comparison | None = None
        self.raised = False
        self.incident: BreakerIncident | None = None

    def estimate(
        self,
        *,
        plan: list[dict[str, Any]],
        v1: V1Result,
        budget_cents: int,
        allowed_skills: list[str] | None,
    ) -> None:
        """V2 and the comparison; an exception of V2 is kept, not raised.

        Reads the database only when a step names a model and token counts: the tenant's
        price overrides then take part in its price, as they do at ingest.
        """
        self.estimated = True
        try:
            overrides = override_rules(tenant=self.tenant) if _prices_a_call(plan) else ()
            self.v2 = estimators.estimate_v2(
                plan,
                budget_cents=budget_cents,
                allowed_skills=allowed_skills,
                model_version=settings.COSTSIM_MODEL_VERSION,
                adapter_version=settings.COSTSIM_ADAPTER_VERSION,
                commit_sha=settings.GIT_COMMIT_SHA,
                price_overrides=overrides,
            )
        except Exception as exc:
            self.error = exc
            return
        self.v2_output = result_dict(self.v2)
        self.comparison = compare(v1, self.v2)

    def reports_change_nothing(self) -> bool:
        """True when the estimate's reports leave a steady breaker as it is."""
        return (
            self.v2 is not None
            and self.v2.status != SCHEMA_ERROR
            and self.comparison.drift_score <= settings.COSTSIM_DRIFT_THRESHOLD
        )

    def record_if_steady(
        self,
        *,
        v1: V1Result,
        raw_plan: list[Any],
        budget_cents: int,
        allowed_skills: list[str] | None,
        key_generation: int | None,
    ) -> SteadyWrite:
        return provenance_record_if_steady(
            **self._provenance_fields(
                v1=v1, raw_plan=raw_plan, budget_cents=budget_cents, allowed_skills=allowed_skills
            ),
            key_generation=key_generation,
        )

    def _provenance_fields(
        self,
        *,
        v1: V1Result,
        raw_plan: list[Any],
        budget_cents: int,
        allowed_skills: list[str] | None,
    ) -> dict[str, Any]:
        """The provenance row of this comparison, as both write paths take it."""
        return {
            "tenant": self.tenant,
            "run_id": self.run_id,
            "source": self.source,
            "input_json": provenance_input_json(
                plan=raw_plan, budget_cents=budget_cents, allowed_skills=allowed_skills
            ),
            "v1_result": v1,
            "v2_result": self.v2,
            "comparison": self.comparison,
            "v2_output": self.v2_output,
        }

    def run(
        self,
        *,
        v1: V1Result,
        plan: list[dict[str, Any]],
        budget_cents: int,
        allowed_skills: list[str] | None,
        raw_plan: list[Any],
    ) -> None:
        """V2 and comparison (unless estimated already), breaker report, provenance, in that
        order; raises on failure."""
        if not self.estimated:
            self.estimate(
                plan=plan, v1=v1, budget_cents=budget_cents, allowed_skills=allowed_skills
            )
        if self.error is not None:
            self.raised = True
            if self.report:
                self.incident = breaker.breaker_report_schema_error(
                    details=self._details(error_type="exception", message=str(self.error))
                )
            raise self.error

        if self.report:
            if self.v2.status == SCHEMA_ERROR:
                self.incident = breaker.breaker_report_schema_error(
                    details=self._details(
                        error_type=SCHEMA_ERROR, message="; ".join(self.v2.warnings)
                    )
                )
            else:
                breaker.breaker_report_success(seen=self.seen)
                self.incident = breaker.breaker_report_drift(
                    score=self.comparison.drift_score,
                    sample_count=1,
                    details=self._details(
                        verdict=self.comparison.verdict,
                        cost_delta_cents=self.comparison.cost_delta_cents,
                        cost_delta_pct=self.comparison.cost_delta_pct,
                        feasibility_match=self.comparison.feasibility_match,
                    ),
                    source=ProvenanceSource.SANDBOX,
                    seen=self.seen,
                )

        if settings.COSTSIM_PROVENANCE_ENABLED:
            provenance_record(
                **self._provenance_fields(
                    v1=v1,
                    raw_plan=raw_plan,
                    budget_cents=budget_cents,
                    allowed_skills=allowed_skills,
                )
            )

    def fill(self, response: dict[str, Any]) -> None:
        """Put what the run got into `response` and count it in metrics."""
        self.record_metrics()
        response["v2"] = self.v2_output
        if self.comparison is not None:
            response["comparison"] = result_dict(self.comparison)

    def _details(self, **values: Any) -> dict[str, Any]:
        return {"source": self.source, **values, "run_id": self.run_id}

    def record_metrics(self) -> None:
        """Count what happened, however far the run got."""
        slug = self.tenant.slug
        if self.raised:
            metrics.simulations_total.labels(tenant=slug, status="exception").inc()
            metrics.schema_errors_total.labels(tenant=slug, error_type="exception").inc()
            return
        if self.v2 is None:
            return
        _child(metrics.simulations_total, slug, self.v2.status).inc()
        _child(metrics.simulation_duration_ms, slug).observe(self.v2.runtime_ms)
        if self.v2.status == SCHEMA_ERROR:
            metrics.schema_errors_total.labels(tenant=slug, error_type=SCHEMA_ERROR).inc()
        if self.comparison is not None:
            _child(metrics.drift_score, slug).observe(self.comparison.drift_score)
            _child(metrics.cost_delta_cents, slug).observe(abs(self.comparison.cost_delta_cents))
            _child(metrics.comparison_verdict_total, slug, self.comparison.verdict).inc()


# The labelled children of the shadow metrics, by metric and label values (in the metric's
# label order). prometheus_client hands out the same child for the same values every time,
# so keeping it skips only its label checks; this runs on every shadowed simulation.
_children: dict[tuple, Any] = {}


def _child(metric, *values: str):
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child
