"""Notifications in the operator console: channels, rules and the delivery log.

Secrets are never shown: the channel form has no secret field and the list has no column
for it. Actions call the same services as the API; their bodies are the helpers below.
"""

from django.contrib import admin
from django.db.models import QuerySet

from notifications.models import Channel, Delivery, DeliveryStatus, Rule
from notifications.services.channels import channel_test
from notifications.services.outbox import deliveries_retry


def retry_deliveries(queryset: QuerySet[Delivery]) -> int:
    """Queue the failed deliveries of `queryset` again; return how many."""
    return deliveries_retry(ids=list(queryset.values_list("pk", flat=True)))


def test_channels(queryset: QuerySet[Channel]) -> dict[str, int]:
    """Send a test message through each channel; return {sent, failed}."""
    counts = {"sent": 0, "failed": 0}
    for channel in queryset.order_by("pk"):
        delivery = channel_test(channel=channel)
        counts["sent" if delivery.status == DeliveryStatus.SENT else "failed"] += 1
    return counts


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "kind", "url", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "tenant__slug", "url")
    list_select_related = ("tenant",)
    fields = ("tenant", "name", "kind", "url", "email_to", "enabled", "created_at")
    # Where a channel points is changed through the API, which checks the URL; here an
    # operator may only rename or disable it.
    readonly_fields = ("tenant", "kind", "url", "email_to", "created_at")
    actions = ["send_test"]

    def has_add_permission(self, request) -> bool:
        # Channels are created through the API, which validates the URL and hands out the
        # secret once.
        return False

    @admin.action(description="Send a test message")
    def send_test(self, request, queryset):
        counts = test_channels(queryset)
        self.message_user(request, f"{counts['sent']} test(s) sent, {counts['failed']} failed.")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "channel", "events", "min_severity", "mode", "enabled")
    list_filter = ("mode", "min_severity", "enabled")
    search_fields = ("tenant__slug", "channel__name")
    list_select_related = ("tenant", "channel")
    raw_id_fields = ("channel",)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "channel",
        "event_type",
        "status",
        "attempts",
        "latency_ms",
        "last_error",
        "created_at",
    )
    list_filter = ("status", "event_type", "channel__kind")
    search_fields = ("event_key", "tenant__slug", "channel__name")
    list_select_related = ("tenant", "channel")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["retry"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry selected failed deliveries")
    def retry(self, request, queryset):
        self.message_user(request, f"{retry_deliveries(queryset)} delivery(ies) queued again.")
