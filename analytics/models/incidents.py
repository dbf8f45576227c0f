"""What a person is told about: incidents, and the per-tenant data that shapes them.

An incident groups one tenant's anomalies that share a cause window; raw anomalies stay as
its evidence. Detection settings (money floors, z threshold, history, dimensions) and
planned activities are data per tenant, so changing them changes the next detection run.
"""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from analytics.models.choices import AnomalyStatus, EntityType, FeedbackLabel, Severity
from analytics.models.records import Budget
from analytics.models.tenancy import Tenant


class IncidentKind(models.TextChoices):
    SPIKE = "spike", "Spike"
    DRIFT = "drift", "Drift"
    OUTLIER = "outlier", "Outlier"
    BUDGET = "budget", "Budget"


class IncidentQuerySet(models.QuerySet):
    def unresolved(self):
        return self.filter(status__in=[AnomalyStatus.OPEN, AnomalyStatus.ACKNOWLEDGED])


class Incident(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=IncidentKind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(
        max_length=12, choices=AnomalyStatus.choices, default=AnomalyStatus.OPEN
    )
    # The scope the numbers below describe: the tenant (entity_id null), or the one entity
    # of an incident no tenant-level anomaly belongs to, or a budget's scope.
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    budget = models.ForeignKey(
        Budget, on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents"
    )
    started_on = models.DateField()
    last_seen_on = models.DateField()
    title = models.CharField(max_length=300)
    expected_cents = models.FloatField()
    actual_cents = models.FloatField()
    impact_cents = models.FloatField()
    impact_pct = models.FloatField(null=True, blank=True)  # null when nothing was expected
    root_causes = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True, default="")
    resolution_notes = models.TextField(blank=True, default="")
    feedback_label = models.CharField(
        max_length=16, choices=FeedbackLabel.choices, null=True, blank=True
    )
    feedback_at = models.DateTimeField(null=True, blank=True)
    feedback_by = models.CharField(max_length=200, blank=True, default="")

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_on", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(last_seen_on__gte=models.F("started_on")),
                name="incident_window_ordered",
            ),
        ]
        indexes = [
            # the incident list and grouping: a tenant's incidents by recency
            models.Index(fields=["tenant", "-last_seen_on"], name="incident_tenant_seen"),
            # the console and the overview: open/acknowledged incidents
            models.Index(
                fields=["tenant", "status"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="incident_unresolved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_on}–{self.last_seen_on}: {self.title}"

    @property
    def scope_label(self) -> str:
        label = EntityType(self.entity_type).label
        return label if self.entity_id is None else f"{label} {self.entity_id}"


def validate_positive(value) -> None:
    if value is None or value <= 0:
        raise ValidationError("Must be greater than 0.")


class PlannedActivity(models.Model):
    """Spend the tenant expects: inside the window, expected values are scaled by the factor."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    starts_on = models.DateField()
    ends_on = models.DateField()
    # The tenant itself (entity_id null: every scope of the tenant) or one user/feature/model.
    entity_type = models.CharField(
        max_length=8, choices=EntityType.choices, default=EntityType.TENANT
    )
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    expected_factor = models.FloatField(validators=[validate_positive, MaxValueValidator(1000)])
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-starts_on", "-id"]
        verbose_name_plural = "planned activities"
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=models.F("starts_on")), name="planned_window_ordered"
            ),
            models.CheckConstraint(
                condition=Q(expected_factor__gt=0), name="planned_factor_positive"
            ),
            models.CheckConstraint(
                condition=(
                    Q(entity_type=EntityType.TENANT, entity_id__isnull=True)
                    | (~Q(entity_type=EntityType.TENANT) & Q(entity_id__isnull=False))
                ),
                name="planned_entity_consistent",
            ),
        ]
        indexes = [
            # detection: the plans overlapping the days it judges
            models.Index(fields=["tenant", "ends_on"], name="planned_tenant_ends"),
        ]

    def __str__(self) -> str:
        scope = "tenant" if self.entity_id is None else f"{self.entity_type} {self.entity_id}"
        return f"{scope} x{self.expected_factor:g} {self.starts_on}–{self.ends_on}"


MONITORABLE_DIMENSIONS = (EntityType.USER, EntityType.FEATURE, EntityType.MODEL)


def validate_monitored_dimensions(value) -> None:
    """A list of distinct dimensions among user, feature and model."""
    allowed = [str(dimension) for dimension in MONITORABLE_DIMENSIONS]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"Enter a list of dimension names, a subset of {allowed}.")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValidationError(f"Unknown dimensions {unknown}; use a subset of {allowed}.")
    if len(set(value)) != len(value):
        raise ValidationError("Name each dimension once.")


class DetectionSettings(models.Model):
    """One tenant's monitor settings; a null field means the project-wide default."""

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="detection_settings"
    )
    # Floors an incident's impact must pass: cents over the whole window, % over expected.
    spike_min_impact_cents = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    spike_min_impact_pct = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    drift_min_impact_cents = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    drift_min_impact_pct = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    outlier_min_impact_cents = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    outlier_min_impact_pct = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)]
    )
    # % of the tenant's expected spend a user's, feature's or model's change must add to be
    # an incident of its own.
    entity_min_tenant_pct = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    z_threshold = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.5), MaxValueValidator(20)]
    )
    # Days of an entity's own history before it is judged; the model reads eight weeks at most.
    min_history_days = models.IntegerField(
        null=True, blank=True, validators=[MinValueValidator(7), MaxValueValidator(56)]
    )
    monitored_dimensions = models.JSONField(
        null=True, blank=True, validators=[validate_monitored_dimensions]
    )
    suppression_days = models.IntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(365)]
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        verbose_name = "detection settings"
        verbose_name_plural = "detection settings"

    def __str__(self) -> str:
        return f"detection settings of {self.tenant}"
