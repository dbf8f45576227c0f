"""Circuit breaker for the V2 shadow estimator (spec/costsim.md §6).

PLACEHOLDER INTERFACE: reports a closed breaker and ignores reports. The safety-net work
replaces the bodies; the signatures are what the sandbox calls.
"""

from costsim.models import BreakerIncident


def breaker_is_disabled() -> bool:
    """`check` with auto-recovery: True while the breaker is open."""
    return False


def breaker_report_drift(
    *, score: float, sample_count: int, details: dict, source: str = "sandbox"
) -> BreakerIncident | None:
    """Feed one drift observation; return the incident when this report tripped the breaker."""
    return None


def breaker_report_schema_error(*, details: dict) -> BreakerIncident | None:
    """Feed one V2 schema error; return the incident when this report tripped the breaker."""
    return None


def breaker_report_success() -> None:
    """A V2 shadow run succeeded: the schema-error streak resets."""
