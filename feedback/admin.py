"""Operator console for pattern feedback: browse, filter, acknowledge."""

from django.contrib import admin, messages
from django.db.models import QuerySet

from analytics.actors import user_actor
from analytics.admin.display import json_table
from feedback.models import PatternFeedback
from feedback.services.patterns import feedbacks_acknowledge


def acknowledge_feedback(*, queryset: QuerySet[PatternFeedback], actor: str) -> tuple[int, int]:
    """Acknowledge the selection; return (newly acknowledged, already acknowledged)."""
    selected = queryset.count()
    changed = feedbacks_acknowledge(feedbacks=queryset, actor=actor)
    return changed, selected - changed


@admin.register(PatternFeedback)
class PatternFeedbackAdmin(admin.ModelAdmin):
    list_display = (
        "detected_at",
        "tenant",
        "pattern_type",
        "severity",
        "short_description",
        "occurrence_count",
        "acknowledged",
    )
    list_filter = ("pattern_type", "severity", "acknowledged", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("signature", "description", "tenant__slug")
    date_hierarchy = "detected_at"
    ordering = ("-detected_at", "id")
    actions = ("acknowledge",)
    fields = (
        "id",
        "tenant",
        "pattern_type",
        "severity",
        "signature",
        "description",
        "occurrence_count",
        "provenance",
        "time_window_minutes",
        "threshold_used",
        "metadata_table",
        "detected_at",
        "created_at",
        "updated_at",
        "acknowledged",
        "acknowledged_at",
        "acknowledged_by",
    )
    readonly_fields = fields

    @admin.display(description="metadata")
    def metadata_table(self, obj: PatternFeedback):
        return json_table(obj.metadata)

    @admin.display(description="description")
    def short_description(self, obj: PatternFeedback) -> str:
        return obj.description[:120]

    def has_add_permission(self, request) -> bool:
        # Rows come from detection only; a hand-made row would have no runs behind it.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Viewing stays possible; the only change is the acknowledge action.
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="Acknowledge selected feedback")
    def acknowledge(self, request, queryset):
        changed, already = acknowledge_feedback(queryset=queryset, actor=user_actor(request))
        self.message_user(
            request,
            f"{changed} feedback item(s) acknowledged; {already} already acknowledged.",
            messages.SUCCESS,
        )
