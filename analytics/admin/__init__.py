"""The analytics operator console, one module per area."""

from analytics.admin import (  # noqa: F401
    anomalies,
    incidents,
    jobs,
    monitoring,
    records,
    reservations,
    snapshots,
    tenancy,
)
