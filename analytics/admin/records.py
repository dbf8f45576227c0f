"""Operator console for client-reported data (read-only) and tenant configuration (editable).

Money is stored in cents and shown in dollars. The overview and the incident pages link
here with a tenant, a created_at range and a user, feature or model: the filters below turn
those query parameters into the list and show which one is active.
"""

from django.contrib import admin
from django.utils import timezone

from analytics.admin.display import money, money_column
from analytics.admin.readonly import ReadOnlyAdmin
from analytics.models import (
    Budget,
    BudgetPeriod,
    CostRecord,
    CostRecordKey,
    FeatureTag,
    RunRecord,
)
from analytics.selectors.budgets import budget_period_status

# The model filter lists models seen in this many newest records: a DISTINCT over the whole
# table would scan it on every changelist load.
RECENT_MODELS_WINDOW = 5000
# Feature filter choices: the tags the tenants defined, up to this many.
FEATURE_CHOICES = 50
UNTAGGED = "untagged"


class RecentModelFilter(admin.SimpleListFilter):
    title = "model (recently seen)"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        recent = CostRecord.objects.order_by("-id").values("id")[:RECENT_MODELS_WINDOW]
        models = list(
            CostRecord.objects.filter(id__in=recent)
            .order_by("model")
            .values_list("model", flat=True)
            .distinct()
        )
        if self.value() and self.value() not in models:
            models.append(self.value())  # a link may name a model not seen lately
        return [(name, name) for name in models]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


class FeatureFilter(admin.SimpleListFilter):
    """`?feature=<tag>`; `untagged` lists the records sent without a tag."""

    title = "feature"
    parameter_name = "feature"

    def lookups(self, request, model_admin):
        tags = list(
            FeatureTag.objects.order_by("tag")
            .values_list("tag", flat=True)
            .distinct()[:FEATURE_CHOICES]
        )
        if self.value() and self.value() not in tags and self.value() != UNTAGGED:
            tags.append(self.value())
        return [(tag, tag) for tag in tags] + [(UNTAGGED, "(untagged)")]

    def queryset(self, request, queryset):
        if self.value() == UNTAGGED:
            return queryset.filter(feature_tag__isnull=True)
        if self.value():
            return queryset.filter(feature_tag=self.value())
        return queryset


class UserFilter(admin.SimpleListFilter):
    """`?user=<user id>` (the drill-down links); users are too many to list as choices."""

    title = "user"
    parameter_name = "user"

    def lookups(self, request, model_admin):
        return [(self.value(), self.value())] if self.value() else []

    def has_output(self) -> bool:
        return self.value() is not None

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(user_id=self.value())
        return queryset


class CreatedRangeFilter(admin.DateFieldListFilter):
    """Django's date filter, which also names a range no choice of its own covers (the
    overview's and the incident pages' links), so the operator sees what the list shows."""

    def choices(self, changelist):
        choices = list(super().choices(changelist))
        since, until = (
            self.date_params.get(self.lookup_kwarg_since),
            self.date_params.get(self.lookup_kwarg_until),
        )
        if (since or until) and not any(choice["selected"] for choice in choices):
            choices.append(
                {
                    "selected": True,
                    "query_string": changelist.get_query_string(),
                    "display": f"{_instant(since) or 'the start'} to {_instant(until) or 'now'}"
                    " (UTC, end excluded)",
                }
            )
        return choices


def _instant(value: str | None) -> str:
    """`2026-03-10T00:00:00+00:00` -> `2026-03-10`, `...T14:00:00+00:00` -> `2026-03-10 14:00`."""
    if not value:
        return ""
    return value.replace("T00:00:00+00:00", "").replace(":00+00:00", "").replace("T", " ")


@admin.register(CostRecord)
class CostRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "tenant",
        "model",
        "feature_tag",
        "user_id",
        "cost",
        "input_tokens",
        "output_tokens",
        "cost_source",
        "is_retry",
    )
    list_filter = (
        "tenant",
        RecentModelFilter,
        FeatureFilter,
        UserFilter,
        "cost_source",
        "is_retry",
        ("created_at", CreatedRangeFilter),
    )
    # Exact matches only: each id column is indexed per tenant and a LIKE scan would not be.
    # Idempotency keys are found through their key table (get_search_results).
    search_fields = ("=request_id", "=run_id", "=workflow_id", "=user_id")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    ordering = ("-created_at", "-id")

    cost = money_column("cost_cents", "cost")

    def get_search_results(self, request, queryset, search_term):
        """Also match the record stored under the idempotency key `search_term`: the key
        table is the index (its primary key leads with the tenant, so a tenant chosen in
        the filter makes the lookup a single index probe)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return found, may_have_duplicates
        keys = CostRecordKey.objects.filter(idempotency_key=term)
        tenant_id = request.GET.get("tenant__id__exact", "")
        if tenant_id.isdigit():
            keys = keys.filter(tenant_id=int(tenant_id))
        by_key = [
            (record_id, created_at)
            for record_id, created_at in keys.values_list("record_id", "created_at")[:100]
        ]
        if not by_key:
            return found, may_have_duplicates
        # (id, created_at) pins each record to its month partition.
        return found | queryset.filter(
            id__in=[record_id for record_id, _ in by_key],
            created_at__in=[created_at for _, created_at in by_key],
        ), may_have_duplicates


@admin.register(RunRecord)
class RunRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "run_id",
        "tenant",
        "worker_id",
        "status",
        "success",
        "attempt",
        "cost",
        "total_tokens",
        "created_at",
        "completed_at",
    )
    list_filter = ("tenant", "status", "is_retry", ("created_at", CreatedRangeFilter))
    search_fields = ("=run_id", "=worker_id", "=parent_run_id")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    ordering = ("-created_at", "-id")

    cost = money_column("cost_cents", "cost")


@admin.register(FeatureTag)
class FeatureTagAdmin(admin.ModelAdmin):
    list_display = ("tag", "tenant", "display_name", "is_active", "budget", "updated_at")
    list_filter = ("is_active", "tenant")
    search_fields = ("tag", "display_name", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("tenant", "tag")

    budget = money_column("budget_cents", "budget")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "budget_type",
        "entity_id",
        "daily_limit",
        "monthly_limit",
        "warn_threshold_pct",
        "hard_limit_enabled",
        "is_active",
    )
    list_filter = ("budget_type", "is_active", "hard_limit_enabled", "tenant")
    search_fields = ("entity_id", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("current_status", "created_at", "updated_at")
    ordering = ("tenant", "id")

    daily_limit = money_column("daily_limit_cents", "daily limit")
    monthly_limit = money_column("monthly_limit_cents", "monthly limit")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        for name in ("daily_limit_cents", "monthly_limit_cents"):
            if name in form.base_fields:
                form.base_fields[name].help_text = "In cents: 5000 is $50.00. Empty: no limit."
        return form

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
                money(status["spend_cents"]),
                money(status["limit_cents"]),
                status["eta_exhausted_at"],
            )
            line = f"{period}: {spend} of {limit} ({status['usage_pct']}%)"
            if eta is not None:
                line += f", exhausted at {eta:%Y-%m-%d %H:%M:%S} UTC"
            lines.append(line)
        return "; ".join(lines) or "-"
