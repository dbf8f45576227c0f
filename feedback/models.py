import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from analytics.models import Tenant
from feedback.choices import FeedbackSeverity, PatternType

__all__ = ["FeedbackSeverity", "PatternFeedback", "PatternType"]


class PatternFeedbackQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant):
        return self.filter(tenant=tenant)

    def unacknowledged(self):
        return self.filter(acknowledged=False)


class PatternFeedback(models.Model):
    """A pattern observed in a tenant's run records; one row per (tenant, type, signature).

    Detection overwrites the row in place, so an open pattern grows its occurrence count and
    provenance instead of piling up duplicates. Run ids are plain strings: feedback never
    holds a foreign key to run records.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    pattern_type = models.CharField(max_length=32, choices=PatternType.choices)
    severity = models.CharField(
        max_length=16, choices=FeedbackSeverity.choices, default=FeedbackSeverity.WARNING
    )
    description = models.TextField()
    signature = models.CharField(max_length=255)
    provenance = models.JSONField(default=list, blank=True, help_text="Run ids (strings).")
    occurrence_count = models.IntegerField(default=1)
    time_window_minutes = models.IntegerField(null=True, blank=True)
    threshold_used = models.CharField(max_length=100, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    acknowledged = models.BooleanField(default=False)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, null=True, blank=True)

    objects = PatternFeedbackQuerySet.as_manager()

    class Meta:
        verbose_name = "pattern feedback"
        verbose_name_plural = "pattern feedback"
        ordering = ["-detected_at", "id"]
        constraints = [
            # Detection upserts on exactly this key (INSERT ... ON CONFLICT).
            models.UniqueConstraint(
                fields=["tenant", "pattern_type", "signature"],
                name="patternfeedback_natural_key",
            ),
            models.CheckConstraint(
                condition=Q(occurrence_count__gte=1), name="patternfeedback_occurrences_min1"
            ),
            models.CheckConstraint(
                condition=Q(acknowledged=False) | Q(acknowledged_at__isnull=False),
                name="patternfeedback_ack_has_time",
            ),
        ]
        indexes = [
            # the feedback list of one tenant, newest first, usually filtered to open items
            models.Index(
                fields=["tenant", "-detected_at"],
                condition=Q(acknowledged=False),
                name="patternfeedback_open",
            ),
            models.Index(fields=["tenant", "-detected_at"], name="patternfeedback_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.pattern_type} {self.signature}"

    @property
    def provenance_count(self) -> int:
        return len(self.provenance or [])
