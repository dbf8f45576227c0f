"""Budget reservations in the console: read-only, open ones first in mind."""

from django.contrib import admin
from django.utils import timezone

from analytics.admin.readonly import ReadOnlyAdminMixin
from analytics.models import BudgetReservation
from analytics.money import dollars
from analytics.selectors.reservations import with_current_status

Status = BudgetReservation.Status


class CurrentStatusFilter(admin.SimpleListFilter):
    """The status a reservation is in now: the stored one lags until the expiry job runs."""

    title = "status"
    parameter_name = "current_status"

    def lookups(self, request, model_admin):
        return Status.choices

    def queryset(self, request, queryset):
        if self.value() in Status.values:
            return queryset.filter(current_status=self.value())
        return queryset


@admin.register(BudgetReservation)
class BudgetReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reservations are written by agents through the API; operators look, they do not edit.

    `?current_status=open` lists those holding budget right now.
    """

    list_display = (
        "created_at",
        "tenant",
        "amount",
        "current",
        "feature_tag",
        "user_id",
        "request_id",
        "run_id",
        "expires_at",
    )
    list_filter = (CurrentStatusFilter, "source", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("request_id", "run_id", "user_id", "feature_tag")
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_queryset(self, request):
        return with_current_status(super().get_queryset(request), at=timezone.now())

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj: BudgetReservation) -> str:
        return dollars(obj.amount_cents)

    @admin.display(description="status", ordering="current_status")
    def current(self, obj: BudgetReservation) -> str:
        return Status(obj.current_status).label
