"""The CostSim operator console: provenance, and the breaker/outbox/canary safety net."""

from costsim.admin import provenance, safety  # noqa: F401
