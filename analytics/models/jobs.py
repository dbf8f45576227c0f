from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class JobRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


class JobChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


class JobRun(models.Model):
    """One dispatch of a fanned-out per-tenant job: its tenants split into chunks.

    Written by `analytics.services.job_runs` only; operators read it in the admin.
    """

    job = models.CharField(max_length=64, editable=False)
    # The beat tick the run belongs to (the hour or day it was dispatched for); a tick sent
    # twice finds its run already there and dispatches nothing.
    scheduled_for = models.DateTimeField(editable=False)
    # What every chunk computes for (a period start, a detection day), fixed at dispatch so
    # that a chunk retried later computes exactly what its first attempt did.
    params = models.JSONField(default=dict, editable=False)
    status = models.CharField(
        max_length=8, choices=JobRunStatus.choices, default=JobRunStatus.RUNNING, editable=False
    )
    chunk_size = models.PositiveIntegerField(editable=False)
    chunks_total = models.PositiveIntegerField(editable=False)
    tenants_total = models.PositiveIntegerField(editable=False)
    started_at = models.DateTimeField(editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "scheduled_for"], name="jobrun_natural_key"),
            models.CheckConstraint(
                condition=Q(status=JobRunStatus.RUNNING, finished_at__isnull=True)
                | (~Q(status=JobRunStatus.RUNNING) & Q(finished_at__isnull=False)),
                name="jobrun_finished_iff_done",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.scheduled_for:%Y-%m-%d %H:%M} ({self.status})"


class JobChunk(models.Model):
    """A slice of a run's tenants, processed by one Celery task (retried as a whole).

    `done_tenant_ids` and `totals` are written in each tenant's own transaction, together
    with the tenant's work, so a retried chunk skips the tenants that already committed and
    counts every tenant once.
    """

    run = models.ForeignKey(JobRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField(editable=False)
    tenant_ids = ArrayField(models.BigIntegerField(), editable=False)
    status = models.CharField(
        max_length=8,
        choices=JobChunkStatus.choices,
        default=JobChunkStatus.PENDING,
        editable=False,
    )
    attempts = models.PositiveIntegerField(default=0, editable=False)
    done_tenant_ids = ArrayField(models.BigIntegerField(), default=list, editable=False)
    failed_tenants = ArrayField(models.CharField(max_length=64), default=list, editable=False)
    totals = models.JSONField(default=dict, editable=False)
    error = models.TextField(blank=True, default="", editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="jobchunk_natural_key"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of run {self.run_id} ({self.status})"
