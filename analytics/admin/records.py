"""Operator console for client-reported data (read-only) and tenant configuration (editable)."""

from django.contrib import admin
from django.utils import timezone

from analytics.models import Budget, BudgetPeriod, CostRecord, FeatureTag, RunRecord
from analytics.money import plain_decimal
from analytics.selectors.budgets import budget_period_status

# The model filter lists models seen in this many newest records: a DISTINCT over the whole
# table would scan it on every changelist load.
RECENT_MODELS_WINDOW = 5000


class RecentModelFilter(admin.SimpleListFilter):
    title = "model (recently seen)"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        recent = CostRecord.objects.order_by("-id").values("id")[:RECENT_MODELS_WINDOW]
        models = (
            CostRecord.objects.filter(id__in=recent)
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()
        )
        return [(name, name) for name in models]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only data: operators look, they do not edit."""

    show_full_result_count = False  # no COUNT(*) over millions of rows per page view

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CostRecord)
class CostRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "tenant",
        "model",
        "feature_tag",
        "user_id",
        "cost_cents",
        "input_tokens",
        "output_tokens",
        "is_retry",
        "idempotency_key",
    )
    list_filter = ("tenant", RecentModelFilter, "is_retry", "created_at")
    # Exact matches only: each id column is indexed per tenant and a LIKE scan would not be.
    search_fields = ("=idempotency_key", "=request_id", "=run_id", "=workflow_id", "=user_id")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    ordering = ("-created_at", "-id")


@admin.register(RunRecord)
class RunRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "run_id",
        "tenant",
        "worker_id",
        "status",
        "success",
        "attempt",
        "cost_cents",
        "total_tokens",
        "created_at",
        "completed_at",
    )
    list_filter = ("tenant", "status", "is_retry", "created_at")
    search_fields = ("=run_id", "=worker_id", "=parent_run_id")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    ordering = ("-created_at", "-id")


@admin.register(FeatureTag)
class FeatureTagAdmin(admin.ModelAdmin):
    list_display = ("tag", "tenant", "display_name", "is_active", "budget_cents", "updated_at")
    list_filter = ("is_active", "tenant")
    search_fields = ("tag", "display_name", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("tenant", "tag")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "budget_type",
        "entity_id",
        "daily_limit_cents",
        "monthly_limit_cents",
        "warn_threshold_pct",
        "hard_limit_enabled",
        "is_active",
    )
    list_filter = ("budget_type", "is_active", "hard_limit_enabled", "tenant")
    search_fields = ("entity_id", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("current_status", "created_at", "updated_at")
    ordering = ("tenant", "id")

    @admin.display(description="Status now")
    def current_status(self, budget: Budget) -> str:
        """Spend and usage of the current day and month, as the status endpoint reports them."""
        if budget.pk is None:
            return "-"
        now = timezone.now()
        lines = []
        for period in (BudgetPeriod.DAILY, BudgetPeriod.MONTHLY):
            status = budget_period_status(budget=budget, period=period, at=now)
            if status is None:
                continue
            spend, limit, eta = (
                plain_decimal(status["spend_cents"]),
                status["limit_cents"],
                status["eta_exhausted_at"],
            )
            line = f"{period}: {spend} of {limit} cents ({status['usage_pct']}%)"
            if eta is not None:
                line += f", exhausted at {eta:%Y-%m-%d %H:%M:%S} UTC"
            lines.append(line)
        return "; ".join(lines) or "-"
