from analytics.models.anomalies import Anomaly, AnomalyEvaluation, BreachHistory, DriftTracking
from analytics.models.choices import (
    AnomalyStatus,
    AnomalyType,
    BudgetPeriod,
    BudgetType,
    DerivedCause,
    EntityType,
    FeedbackLabel,
    RunStatus,
    Severity,
    SnapshotStatus,
    SnapshotType,
)
from analytics.models.incidents import (
    DetectionSettings,
    Incident,
    IncidentKind,
    PlannedActivity,
)
from analytics.models.records import Budget, CostRecord, FeatureTag, RunRecord
from analytics.models.snapshots import Baseline, CostSnapshot, SnapshotAggregate
from analytics.models.tenancy import ApiKey, Tenant

__all__ = [
    "Anomaly",
    "AnomalyEvaluation",
    "AnomalyStatus",
    "AnomalyType",
    "ApiKey",
    "Baseline",
    "BreachHistory",
    "Budget",
    "BudgetPeriod",
    "BudgetType",
    "CostRecord",
    "CostSnapshot",
    "DerivedCause",
    "DetectionSettings",
    "DriftTracking",
    "EntityType",
    "FeatureTag",
    "FeedbackLabel",
    "Incident",
    "IncidentKind",
    "PlannedActivity",
    "RunRecord",
    "RunStatus",
    "Severity",
    "SnapshotAggregate",
    "SnapshotStatus",
    "SnapshotType",
    "Tenant",
]
