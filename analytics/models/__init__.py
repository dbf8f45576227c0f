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
from analytics.models.jobs import JobChunk, JobChunkStatus, JobRun, JobRunStatus
from analytics.models.pricing import ModelPriceOverride
from analytics.models.records import (
    Budget,
    CostRecord,
    CostRecordKey,
    CostSource,
    FeatureTag,
    RunRecord,
)
from analytics.models.reservations import BudgetReservation
from analytics.models.rollup import CostRollup
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
    "BudgetReservation",
    "BudgetPeriod",
    "BudgetType",
    "CostRecord",
    "CostRecordKey",
    "CostRollup",
    "CostSnapshot",
    "CostSource",
    "DerivedCause",
    "DetectionSettings",
    "DriftTracking",
    "EntityType",
    "FeatureTag",
    "FeedbackLabel",
    "Incident",
    "IncidentKind",
    "JobChunk",
    "JobChunkStatus",
    "JobRun",
    "JobRunStatus",
    "ModelPriceOverride",
    "PlannedActivity",
    "RunRecord",
    "RunStatus",
    "Severity",
    "SnapshotAggregate",
    "SnapshotStatus",
    "SnapshotType",
    "Tenant",
]
