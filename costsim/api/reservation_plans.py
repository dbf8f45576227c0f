"""Prices a plan for `POST /api/v1/budgets/reserve/` (analytics), with costsim's own rules.

A plan is validated exactly as `POST /costsim/simulate/` validates it, and priced by the
authoritative estimator (V1), the one whose result simulate answers with. The shadow V2 run,
the breaker and provenance are simulate's business and are left out: a reservation only
needs the figure.
"""

from typing import Any

from costsim.api.serializers import parse_simulation_body
from costsim.services.estimators import estimate_v1


def plan_cost_cents(plan: Any) -> int:
    """The V1 estimated cost of `plan` in cents; DRF's ValidationError naming the step at
    fault (`plan[2].skill`) when simulate would refuse the plan."""
    body = parse_simulation_body({"plan": plan})
    return estimate_v1(body.plan).estimated_cost_cents
