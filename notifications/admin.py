"""Notifications in the operator console: channels, rules and the delivery log.

Channels are created and edited here through the same services as the API, so a URL is
checked the same way. A webhook channel's secret is shown once, on the page that answers
its creation (or a rotation), and never again: the forms have no secret field and the
lists no column for it. Actions call services; their bodies are the helpers below, which
tests call directly.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from analytics.models import Tenant
from notifications.models import (
    TENANT_CHANNEL_KINDS,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    Rule,
)
from notifications.services.channels import (
    channel_create,
    channel_secret_rotate,
    channel_test,
    channel_update,
    channel_validate,
)
from notifications.services.outbox import deliveries_purge, deliveries_retry

SECRET_TEMPLATE = "admin/notifications/channel/secret_once.html"


# Action bodies ------------------------------------------------------------------------


def retry_deliveries(queryset: QuerySet[Delivery]) -> int:
    """Queue the failed deliveries of `queryset` again; return how many."""
    return deliveries_retry(ids=list(queryset.values_list("pk", flat=True)))


def purge_deliveries(queryset: QuerySet[Delivery]) -> int:
    """Delete the finished deliveries of `queryset` (pending and held are kept)."""
    return deliveries_purge(ids=list(queryset.values_list("pk", flat=True)), older_than_days=0)


def test_channels(queryset: QuerySet[Channel]) -> dict[str, int]:
    """Send a test message through each channel; return {sent, failed}."""
    counts = {"sent": 0, "failed": 0}
    for channel in queryset.order_by("pk"):
        delivery = channel_test(channel=channel)
        counts["sent" if delivery.status == DeliveryStatus.SENT else "failed"] += 1
    return counts


def test_delivery_channels(queryset: QuerySet[Delivery]) -> dict[str, int]:
    """Send one test message through each channel the selected deliveries went to."""
    channel_ids = set(queryset.values_list("channel_id", flat=True))
    return test_channels(Channel.objects.filter(pk__in=channel_ids))


def rotate_secrets(queryset: QuerySet[Channel]) -> list[tuple[Channel, str]]:
    """Give each webhook channel of `queryset` a new secret; return (channel, secret)."""
    webhooks = queryset.filter(kind=ChannelKind.WEBHOOK).order_by("pk")
    return [(channel, channel_secret_rotate(channel=channel)) for channel in webhooks]


def _secret_page(request, admin_site, *, title: str, secrets: list[tuple[Channel, str]]):
    context = {
        **admin_site.each_context(request),
        "title": title,
        "opts": Channel._meta,
        "secrets": secrets,
    }
    response = TemplateResponse(request, SECRET_TEMPLATE, context)
    # The page holds a secret: no cache may keep it.
    response["Cache-Control"] = "no-store"
    return response


# Channels -----------------------------------------------------------------------------


class EmailListField(forms.CharField):
    """Addresses one per line or separated by commas, as a list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


class ChannelForm(forms.ModelForm):
    """Validates through the channel service, so the admin refuses what the API refuses."""

    email_to = EmailListField(required=False, label="Email to", help_text="One per line.")
    url = forms.URLField(required=False, max_length=2000, assume_scheme="https")

    class Meta:
        model = Channel
        fields = ("tenant", "name", "kind", "url", "email_to", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "tenant" in self.fields:
            self.fields["tenant"].required = True
            self.fields["tenant"].queryset = Tenant.objects.order_by("slug")
        if "kind" in self.fields:
            self.fields["kind"].choices = [(k.value, k.label) for k in TENANT_CHANNEL_KINDS]

    def clean(self):
        data = super().clean()
        channel = Channel(
            pk=self.instance.pk,
            tenant=data.get("tenant", self.instance.tenant if self.instance.pk else None),
            name=data.get("name", self.instance.name),
            kind=data.get("kind", self.instance.kind),
            url=data.get("url", self.instance.url) or "",
            email_to=data.get("email_to", self.instance.email_to),
            enabled=data.get("enabled", self.instance.enabled),
        )
        try:
            channel_validate(channel)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "tenant", "kind", "url", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "tenant__slug", "url")
    list_select_related = ("tenant",)
    actions = ["send_test", "rotate_secret"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name", "kind", "url", "email_to", "enabled")
        return ("tenant", "name", "kind", "url", "email_to", "enabled", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        if obj.tenant_id is None:
            # A project-wide channel mirrors settings; only switching it off is up to the
            # console.
            return ("tenant", "name", "kind", "url", "email_to", "created_at")
        return ("tenant", "kind", "created_at")

    def save_model(self, request, obj, form, change):
        fields = ("name", "url", "email_to", "enabled")
        data = {field: form.cleaned_data[field] for field in fields if field in form.cleaned_data}
        if change:
            channel_update(channel=obj, data=data)
            return
        created = channel_create(
            tenant=form.cleaned_data["tenant"], data={**data, "kind": form.cleaned_data["kind"]}
        )
        # The admin goes on with `obj` (log entry, the answer page).
        obj.pk, obj.secret, obj.created_at = created.pk, created.secret, created.created_at
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        if obj.kind != ChannelKind.WEBHOOK:
            return super().response_add(request, obj, post_url_continue)
        return _secret_page(
            request, self.admin_site, title="Channel created", secrets=[(obj, obj.secret)]
        )

    @admin.action(description="Send a test message")
    def send_test(self, request, queryset):
        counts = test_channels(queryset)
        self.message_user(request, f"{counts['sent']} test(s) sent, {counts['failed']} failed.")

    @admin.action(description="Rotate the signing secret (webhooks; shown once)")
    def rotate_secret(self, request, queryset):
        rotated = rotate_secrets(queryset)
        if not rotated:
            self.message_user(request, "No webhook channel selected.", messages.WARNING)
            return None
        return _secret_page(request, self.admin_site, title="New secrets", secrets=rotated)


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "channel", "events", "min_severity", "mode", "enabled")
    list_filter = ("mode", "min_severity", "enabled")
    search_fields = ("tenant__slug", "channel__name")
    list_select_related = ("tenant", "channel")
    raw_id_fields = ("channel",)


# Deliveries ---------------------------------------------------------------------------


class DueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return (("due", "pending, due now"), ("waiting", "pending, backing off"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "due":
            return queryset.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        if self.value() == "waiting":
            return queryset.filter(status=DeliveryStatus.PENDING, next_attempt_at__gt=now)
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "channel",
        "kind",
        "event_type",
        "status",
        "attempts_display",
        "latency_ms",
        "next_attempt_at",
        "short_error",
        "created_at",
    )
    list_filter = ("status", DueFilter, "event_type", "channel__kind")
    search_fields = ("=event_key", "tenant__slug", "channel__name")
    list_select_related = ("tenant", "channel")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["retry", "send_test", "purge"]
    exclude = ("payload",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Delivery._meta.fields if field.name != "payload"] + [
            "payload_pretty"
        ]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="kind", ordering="channel__kind")
    def kind(self, delivery: Delivery) -> str:
        return delivery.channel.kind

    @admin.display(description="attempts")
    def attempts_display(self, delivery: Delivery) -> str:
        return f"{delivery.attempts}/{delivery.max_attempts}"

    @admin.display(description="last error")
    def short_error(self, delivery: Delivery) -> str:
        return Truncator(delivery.last_error).chars(60) or "-"

    @admin.display(description="payload")
    def payload_pretty(self, delivery: Delivery) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
            json.dumps(delivery.payload, indent=2, sort_keys=True, ensure_ascii=False),
        )

    @admin.action(description="Retry selected failed deliveries (due now, fresh attempts)")
    def retry(self, request, queryset):
        self.message_user(request, f"{retry_deliveries(queryset)} delivery(ies) queued again.")

    @admin.action(description="Send a test message through the selected deliveries' channels")
    def send_test(self, request, queryset):
        counts = test_delivery_channels(queryset)
        self.message_user(request, f"{counts['sent']} test(s) sent, {counts['failed']} failed.")

    @admin.action(description="Purge selected finished deliveries (pending and held are kept)")
    def purge(self, request, queryset):
        self.message_user(request, f"{purge_deliveries(queryset)} delivery(ies) deleted.")
