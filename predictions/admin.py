"""Operator console for predictions: read-only, filterable by validity and confidence."""

from django.contrib import admin
from django.utils import timezone

from analytics.admin.display import json_table
from analytics.admin.readonly import ReadOnlyAdminMixin
from predictions.models import Prediction

HIGH_CONFIDENCE = 0.7


class ValidityFilter(admin.SimpleListFilter):
    title = "validity"
    parameter_name = "validity"

    def lookups(self, request, model_admin):
        return (("valid", "Still valid"), ("expired", "Expired or superseded"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "valid":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


class ConfidenceFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"

    def lookups(self, request, model_admin):
        return (("high", f"High (> {HIGH_CONFIDENCE})"), ("other", f"≤ {HIGH_CONFIDENCE}"))

    def queryset(self, request, queryset):
        if self.value() == "high":
            return queryset.filter(confidence_score__gt=HIGH_CONFIDENCE)
        if self.value() == "other":
            return queryset.filter(confidence_score__lte=HIGH_CONFIDENCE)
        return queryset


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "tenant",
        "prediction_type",
        "subject_type",
        "subject_id",
        "confidence_score",
        "valid",
        "expires_at",
    )
    list_filter = (
        "prediction_type",
        "subject_type",
        ValidityFilter,
        ConfidenceFilter,
        "tenant",
    )
    list_select_related = ("tenant",)
    search_fields = ("subject_id", "tenant__slug")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "id")
    # One row per subject, type and hour adds up; an exact count on every page is not needed.
    show_full_result_count = False
    fields = (
        "id",
        "tenant",
        "prediction_type",
        "subject_type",
        "subject_id",
        "confidence_score",
        "prediction_table",
        "factors_table",
        "notes",
        "is_advisory",
        "cycle_hour",
        "expires_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="prediction")
    def prediction_table(self, obj: Prediction):
        return json_table(obj.prediction_value)

    @admin.display(description="contributing factors")
    def factors_table(self, obj: Prediction):
        return json_table(obj.contributing_factors)

    @admin.display(boolean=True, description="valid")
    def valid(self, obj: Prediction) -> bool:
        return obj.is_valid
