"""The analytics operator console, one module per area."""

from analytics.admin import anomalies, incidents, monitoring, records, snapshots, tenancy  # noqa: F401
