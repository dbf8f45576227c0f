import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from analytics.models import Tenant
from predictions.choices import PredictionType, SubjectType

__all__ = ["Prediction", "PredictionType", "SubjectType"]


class PredictionQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant):
        return self.filter(tenant=tenant)

    def valid(self, now=None):
        return self.filter(expires_at__gt=now or timezone.now())


class Prediction(models.Model):
    """An advisory forecast about a subject (a worker). It never changes run data.

    `subject_id` is a plain reference, not a foreign key: predictions outlive and never
    constrain the records they are about.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    prediction_type = models.CharField(max_length=32, choices=PredictionType.choices)
    subject_type = models.CharField(max_length=16, choices=SubjectType.choices)
    subject_id = models.CharField(max_length=128)
    confidence_score = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    prediction_value = models.JSONField(default=dict, blank=True)
    contributing_factors = models.JSONField(default=list, blank=True)
    cycle_hour = models.DateTimeField(help_text="Cycle time truncated to the UTC hour.")
    expires_at = models.DateTimeField()
    is_advisory = models.BooleanField(default=True, editable=False)
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            # The cycle upserts on exactly this key (INSERT ... ON CONFLICT).
            models.UniqueConstraint(
                fields=["tenant", "prediction_type", "subject_type", "subject_id", "cycle_hour"],
                name="prediction_natural_key",
            ),
            models.CheckConstraint(
                condition=Q(confidence_score__gte=0) & Q(confidence_score__lte=1),
                name="prediction_confidence_0_1",
            ),
            # Predictions are advice, never facts: no code path may store anything else.
            models.CheckConstraint(condition=Q(is_advisory=True), name="prediction_is_advisory"),
        ]
        indexes = [
            # superseding and the subject view: a subject's predictions, still valid ones first
            models.Index(
                fields=["tenant", "subject_type", "subject_id", "prediction_type", "-expires_at"],
                name="prediction_subject",
            ),
            # the list endpoint: newest first, usually limited to valid rows
            models.Index(fields=["tenant", "-created_at"], name="prediction_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.prediction_type} {self.subject_type}:{self.subject_id}"

    @property
    def is_valid(self) -> bool:
        return self.expires_at > timezone.now()
