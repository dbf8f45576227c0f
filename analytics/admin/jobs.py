"""Operator console for fanned-out job runs: read-only, a run with its chunks' progress."""

from django.contrib import admin
from django.db.models import Count, Q

from analytics.admin.readonly import ReadOnlyAdmin, ReadOnlyAdminMixin
from analytics.models import JobChunk, JobChunkStatus, JobRun
from analytics.services.job_runs import job_run_report


class JobChunkInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = JobChunk
    extra = 0
    fields = (
        "index",
        "status",
        "attempts",
        "tenant_count",
        "done_count",
        "failed_tenants",
        "totals",
        "error",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    ordering = ("index",)

    @admin.display(description="tenants")
    def tenant_count(self, chunk: JobChunk) -> int:
        return len(chunk.tenant_ids)

    @admin.display(description="done")
    def done_count(self, chunk: JobChunk) -> int:
        return len(chunk.done_tenant_ids)


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = (
        "job",
        "scheduled_for",
        "status",
        "progress",
        "tenants_total",
        "started_at",
        "finished_at",
    )
    list_filter = ("job", "status")
    date_hierarchy = "scheduled_for"
    fields = (
        "job",
        "scheduled_for",
        "status",
        "params",
        "tenants_total",
        "chunk_size",
        "chunks_total",
        "started_at",
        "finished_at",
        "report",
    )
    readonly_fields = fields
    inlines = (JobChunkInline,)

    def get_queryset(self, request):
        finished = Q(chunks__status__in=(JobChunkStatus.SUCCESS, JobChunkStatus.FAILED))
        return (
            super().get_queryset(request).annotate(chunks_finished=Count("chunks", filter=finished))
        )

    @admin.display(description="chunks finished")
    def progress(self, run: JobRun) -> str:
        return f"{run.chunks_finished} / {run.chunks_total}"

    @admin.display(description="report (tenants done so far)")
    def report(self, run: JobRun) -> str:
        report = job_run_report(run)
        totals = ", ".join(f"{name} {value}" for name, value in report.totals.items())
        failed = ", ".join(report.failed_tenants) or "none"
        return f"{report.tenants} tenant(s); {totals}; failed: {failed}"
