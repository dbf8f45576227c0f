"""What shapes the next detection run of a tenant: its detection settings and planned activity.

The forms validate with the models' full_clean (the field ranges, the dimension list, the
constraints); saving goes through the same services as the API, so both write alike.
"""

from django import forms
from django.contrib import admin

from analytics.actors import user_actor
from analytics.models import DetectionSettings, EntityType, PlannedActivity
from analytics.selectors.incidents import (
    SETTING_NAMES,
    detection_settings_defaults,
    detection_settings_effective,
)
from analytics.services.detection_settings import (
    PLANNED_ACTIVITY_FIELDS,
    detection_settings_update,
    planned_activity_create,
    planned_activity_update,
)


def _shown(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(value) if value else "none (tenant level only)"
    return f"{value:g}" if isinstance(value, float) else str(value)


@admin.register(DetectionSettings)
class DetectionSettingsAdmin(admin.ModelAdmin):
    console_position = 3
    list_display = ("tenant", "overrides", "updated_at", "updated_by")
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug", "tenant__name")
    fieldsets = (
        (None, {"fields": ("tenant",)}),
        (
            "Impact floors (an incident passes both)",
            {
                "fields": (
                    ("spike_min_impact_cents", "spike_min_impact_pct"),
                    ("drift_min_impact_cents", "drift_min_impact_pct"),
                    ("outlier_min_impact_cents", "outlier_min_impact_pct"),
                )
            },
        ),
        (
            "Detection",
            {
                "fields": (
                    "z_threshold",
                    "min_history_days",
                    "monitored_dimensions",
                    "suppression_days",
                )
            },
        ),
        (None, {"fields": (("updated_at", "updated_by"),)}),
    )
    readonly_fields = ("updated_at", "updated_by")

    def get_readonly_fields(self, request, obj=None):
        # One row per tenant: moving a row to another tenant would silently swap settings.
        return (*self.readonly_fields, "tenant") if obj else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        defaults = detection_settings_defaults()
        effective = detection_settings_effective(tenant=obj.tenant) if obj else None
        for name in SETTING_NAMES:
            field = form.base_fields.get(name)
            if field is None:
                continue
            text = f"Empty = project default ({_shown(defaults[name])})."
            if effective is not None:
                text += f" In effect now: {_shown(getattr(effective, name))}."
            if name == "monitored_dimensions":
                text = f'A JSON list, a subset of ["user", "feature", "model"]. {text}'
            field.help_text = text
        return form

    def save_model(self, request, obj, form, change):
        stored = detection_settings_update(
            tenant=obj.tenant,
            values={name: getattr(obj, name) for name in SETTING_NAMES},
            actor=user_actor(request),
            partial=False,
        )
        obj.pk, obj.updated_at, obj.updated_by = stored.pk, stored.updated_at, stored.updated_by

    @admin.display(description="overridden settings")
    def overrides(self, obj):
        names = [name for name in SETTING_NAMES if getattr(obj, name) is not None]
        return ", ".join(names) or "none (project defaults)"


class PlannedActivityForm(forms.ModelForm):
    class Meta:
        model = PlannedActivity
        fields = (
            "tenant",
            "starts_on",
            "ends_on",
            "entity_type",
            "entity_id",
            "expected_factor",
            "note",
        )

    def clean(self):
        """Say which field is wrong before the database constraints would reject the row."""
        cleaned = super().clean()
        starts_on, ends_on = cleaned.get("starts_on"), cleaned.get("ends_on")
        if starts_on and ends_on and ends_on < starts_on:
            self.add_error("ends_on", "The plan cannot end before it starts.")
        entity_type, entity_id = cleaned.get("entity_type"), cleaned.get("entity_id")
        if entity_type == EntityType.TENANT and entity_id:
            self.add_error("entity_id", "Leave empty: a tenant plan covers the whole tenant.")
        elif entity_type and entity_type != EntityType.TENANT and not entity_id:
            self.add_error("entity_id", f"Name the {entity_type} this plan is about.")
        return cleaned


@admin.register(PlannedActivity)
class PlannedActivityAdmin(admin.ModelAdmin):
    console_position = 2
    form = PlannedActivityForm
    list_display = (
        "tenant",
        "scope",
        "starts_on",
        "ends_on",
        "expected_factor",
        "note",
        "created_by",
        "created_at",
    )
    list_filter = ("entity_type", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("entity_id", "note", "tenant__slug")
    date_hierarchy = "starts_on"
    fields = (
        "tenant",
        ("starts_on", "ends_on"),
        ("entity_type", "entity_id"),
        "expected_factor",
        "note",
        ("created_at", "created_by"),
    )
    readonly_fields = ("created_at", "created_by")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.base_fields["expected_factor"].help_text = (
            "Inside the window, expected spend is multiplied by this: 3 for a launch that "
            "triples traffic, 0.5 for a quiet week."
        )
        return form

    def get_readonly_fields(self, request, obj=None):
        # A plan belongs to its tenant; moving it would change two tenants' expectations.
        return (*self.readonly_fields, "tenant") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = {name: getattr(obj, name) for name in PLANNED_ACTIVITY_FIELDS}
        if change:
            planned_activity_update(planned_activity=obj, data=data)
            return
        plan = planned_activity_create(tenant=obj.tenant, data=data, actor=user_actor(request))
        obj.pk, obj.created_at, obj.created_by = plan.pk, plan.created_at, plan.created_by

    @admin.display(description="scope", ordering="entity_id")
    def scope(self, obj):
        return "tenant" if obj.entity_id is None else f"{obj.entity_type}: {obj.entity_id}"
