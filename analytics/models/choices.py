"""The one vocabulary per enum, shared by the analytics models, serializers and filters."""

from django.db import models


class EntityType(models.TextChoices):
    TENANT = "tenant", "Tenant"
    USER = "user", "User"
    FEATURE = "feature", "Feature"
    MODEL = "model", "Model"


class Severity(models.TextChoices):
    LOW = "LOW", "Low"
    MEDIUM = "MEDIUM", "Medium"
    HIGH = "HIGH", "High"
    CRITICAL = "CRITICAL", "Critical"


class AnomalyType(models.TextChoices):
    ABSOLUTE_SPIKE = "ABSOLUTE_SPIKE", "Absolute spike"
    SUSTAINED_DRIFT = "SUSTAINED_DRIFT", "Sustained drift"
    BUDGET_WARNING = "BUDGET_WARNING", "Budget warning"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED", "Budget exceeded"
    SNAPSHOT_SPIKE = "SNAPSHOT_SPIKE", "Snapshot spike"
    STATISTICAL_OUTLIER = "STATISTICAL_OUTLIER", "Statistical outlier"


class AnomalyStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


class FeedbackLabel(models.TextChoices):
    YES = "YES", "Yes, a real anomaly"
    NO = "NO", "No, a false alarm"
    PLANNED_ACTIVITY = "PLANNED_ACTIVITY", "Planned activity"


class DerivedCause(models.TextChoices):
    RETRY_LOOP = "RETRY_LOOP", "Retry loop"
    PROMPT_GROWTH = "PROMPT_GROWTH", "Prompt growth"
    FEATURE_SURGE = "FEATURE_SURGE", "Feature surge"
    TRAFFIC_GROWTH = "TRAFFIC_GROWTH", "Traffic growth"
    UNKNOWN = "UNKNOWN", "Unknown"


class BudgetType(models.TextChoices):
    TENANT = "tenant", "Tenant"
    FEATURE = "feature", "Feature"
    USER = "user", "User"


class BudgetPeriod(models.TextChoices):
    DAILY = "daily", "Daily"
    MONTHLY = "monthly", "Monthly"


class SnapshotType(models.TextChoices):
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"


class SnapshotStatus(models.TextChoices):
    COMPUTING = "computing", "Computing"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CRASHED = "crashed", "Crashed"

    @classmethod
    def terminal(cls) -> frozenset[str]:
        return frozenset({cls.COMPLETED, cls.FAILED, cls.CRASHED})
