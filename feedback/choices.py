"""Enums of the feedback app; plain enums, safe to import from pure engines."""

from django.db import models


class PatternType(models.TextChoices):
    FAILURE_PATTERN = "failure_pattern", "Failure pattern"
    COST_SPIKE = "cost_spike", "Cost spike"


class FeedbackSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
