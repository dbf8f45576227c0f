"""Provenance in the operator console: read-only, filterable, payloads shown as tables.

Estimated costs are stored in cents and shown in dollars.
"""

from django.contrib import admin

from analytics.admin.display import json_table, money_column
from analytics.admin.readonly import ReadOnlyAdminMixin
from costsim.models import Provenance


def _pretty_json(value) -> str:
    if value is None:
        return "-"
    return json_table(value)


@admin.register(Provenance)
class ProvenanceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only rows: nothing can be added, changed or deleted here.

    Only the retention prune deletes provenance, so the delete action is gone too.
    """

    list_display = (
        "id",
        "created_at",
        "tenant",
        "variant_slug",
        "source",
        "verdict",
        "drift_score",
        "v1_estimate",
        "v2_estimate",
        "delta",
        "input_hash",
        "run_id",
    )
    list_filter = ("variant_slug", "source", "verdict", "created_at", "tenant")
    list_select_related = ("tenant",)
    # Exact matches: the hashes are opaque, and a prefix search would scan the table.
    search_fields = ("=input_hash", "=output_hash", "=run_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    # Counting a provenance table of millions of rows on every page view is not worth it.
    show_full_result_count = False
    list_per_page = 50
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "tenant",
                    "created_at",
                    "run_id",
                    ("variant_slug", "source"),
                    ("model_version", "adapter_version", "commit_sha"),
                )
            },
        ),
        (
            "Comparison",
            {
                "fields": (
                    ("v1_estimate", "v2_estimate", "delta"),
                    ("drift_score", "verdict"),
                    ("v2_status", "runtime_ms"),
                )
            },
        ),
        ("Input", {"fields": ("input_hash", "input_pretty")}),
        ("Output", {"fields": ("output_hash", "output_pretty")}),
    )
    readonly_fields = (
        "tenant",
        "created_at",
        "run_id",
        "variant_slug",
        "source",
        "model_version",
        "adapter_version",
        "commit_sha",
        "v1_estimate",
        "v2_estimate",
        "delta",
        "drift_score",
        "verdict",
        "v2_status",
        "runtime_ms",
        "input_hash",
        "input_pretty",
        "output_hash",
        "output_pretty",
    )

    v1_estimate = money_column("v1_cost", "V1 estimate")
    v2_estimate = money_column("v2_cost", "V2 estimate")
    delta = money_column("cost_delta", "V2 - V1")

    @admin.display(description="input JSON")
    def input_pretty(self, obj: Provenance) -> str:
        return _pretty_json(obj.input_json)

    @admin.display(description="output JSON (V2 result)")
    def output_pretty(self, obj: Provenance) -> str:
        return _pretty_json(obj.output_json)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # The changelist never shows the payloads; only the detail page needs them.
        url_name = getattr(request.resolver_match, "url_name", None) or ""
        if url_name.endswith("changelist"):
            queryset = queryset.defer("input_json", "output_json")
        return queryset
