"""The CostSim operator console: provenance, the breaker/outbox/canary safety net, and the
CostSim panel of the overview."""

from costsim.admin import overview, provenance, safety  # noqa: F401
