"""Input and output serializers of ingest and tenant data.

The ingest bodies are validated by analytics.api.batches for speed; the `*Input`
serializers below only describe them in the OpenAPI schema.
"""

from rest_framework import serializers

from analytics.api.batches import (
    MAX_RECORD_CENTS,
    MAX_RECORD_TOKENS,
    MAX_RUN_ATTEMPT,
    MAX_RUN_CENTS,
    MAX_RUN_LATENCY_MS,
    MAX_RUN_TOKENS,
)
from analytics.api.fields import (
    AwareDateTimeField,
    StrictModelSerializer,
    StrictSerializer,
    TimeWindowFilterSerializer,
)
from analytics.models import Budget, CostRecord, FeatureTag, RunRecord, RunStatus


class CostRecordFilterSerializer(TimeWindowFilterSerializer):
    model = serializers.CharField(required=False, max_length=64)
    feature_tag = serializers.CharField(required=False, max_length=128)
    user_id = serializers.CharField(required=False, max_length=64)


class RunFilterSerializer(TimeWindowFilterSerializer):
    worker_id = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(required=False, choices=RunStatus.choices)


class CostRecordSerializer(StrictModelSerializer):
    class Meta:
        model = CostRecord
        fields = (
            "id",
            "idempotency_key",
            "user_id",
            "feature_tag",
            "request_id",
            "workflow_id",
            "run_id",
            "skill_id",
            "model",
            "provider",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_cents",
            "cost_source",
            "price_catalog_version",
            "is_retry",
            "created_at",
            "ingested_at",
        )
        read_only_fields = fields
        extra_kwargs = {
            "cost_cents": {"help_text": "Null exactly when `cost_source` is `unpriced`."},
            "price_catalog_version": {
                "help_text": "The price catalogue consulted; null for client costs."
            },
        }


class RunRecordSerializer(StrictModelSerializer):
    id = serializers.CharField(source="run_id", read_only=True)

    class Meta:
        model = RunRecord
        fields = (
            "id",
            "worker_id",
            "status",
            "success",
            "error",
            "total_tokens",
            "total_latency_ms",
            "cost_cents",
            "is_retry",
            "attempt",
            "parent_run_id",
            "created_at",
            "started_at",
            "completed_at",
            "ingested_at",
            "updated_at",
        )
        read_only_fields = fields


class FeatureTagSerializer(StrictModelSerializer):
    class Meta:
        model = FeatureTag
        fields = (
            "id",
            "tag",
            "display_name",
            "description",
            "budget_cents",
            "is_active",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")


class BudgetSerializer(StrictModelSerializer):
    class Meta:
        model = Budget
        fields = (
            "id",
            "budget_type",
            "entity_id",
            "daily_limit_cents",
            "monthly_limit_cents",
            "warn_threshold_pct",
            "hard_limit_enabled",
            "is_active",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")
        extra_kwargs = {"entity_id": {"allow_blank": False}}


class BudgetPeriodStatusSerializer(serializers.Serializer):
    # A period's spend is a sum of records: as wide as a snapshot's total.
    spend_cents = serializers.DecimalField(max_digits=38, decimal_places=6)
    reserved_cents = serializers.IntegerField(
        help_text="Held by open budget reservations (`/budgets/reserve/`)."
    )
    available_cents = serializers.DecimalField(
        max_digits=38,
        decimal_places=6,
        help_text="limit − spend − reserved; negative once over the limit.",
    )
    limit_cents = serializers.IntegerField()
    usage_pct = serializers.FloatField(help_text="Spend as a percentage of the limit.")
    eta_exhausted_at = AwareDateTimeField(allow_null=True)
    unpriced_records = serializers.IntegerField(
        help_text="Records of the period stored without a cost (model unknown to the price "
        "catalogue and the tenant's overrides); spend leaves them out."
    )


class BudgetStatusSerializer(serializers.Serializer):
    daily = BudgetPeriodStatusSerializer(allow_null=True)
    monthly = BudgetPeriodStatusSerializer(allow_null=True)


# --- schema-only descriptions of the batch bodies ---------------------------------------------


class CostRecordInputSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        help_text="Sent again with the same payload: a duplicate, not written. With another "
        "payload: 409, and nothing of the batch is written.",
    )
    user_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    feature_tag = serializers.CharField(
        max_length=128,
        required=False,
        allow_null=True,
        help_text="Stored as `unclassified` unless it is an active tag of the tenant "
        "(`/feature-tags/`); the answer's `unclassified` counts such records and names the tags.",
    )
    request_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    workflow_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    run_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    skill_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    model = serializers.CharField(max_length=64)
    provider = serializers.CharField(max_length=64, required=False, allow_null=True)
    input_tokens = serializers.IntegerField(
        min_value=0,
        max_value=MAX_RECORD_TOKENS,
        required=False,
        default=0,
        help_text="Every input token of the call, cached ones included.",
    )
    output_tokens = serializers.IntegerField(
        min_value=0, max_value=MAX_RECORD_TOKENS, required=False, default=0
    )
    cache_read_tokens = serializers.IntegerField(
        min_value=0,
        max_value=MAX_RECORD_TOKENS,
        required=False,
        default=0,
        help_text="The part of input_tokens read from the prompt cache.",
    )
    cache_write_tokens = serializers.IntegerField(
        min_value=0,
        max_value=MAX_RECORD_TOKENS,
        required=False,
        default=0,
        help_text="The part of input_tokens written to the prompt cache; with "
        "cache_read_tokens at most input_tokens.",
    )
    cost_cents = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        min_value=0,
        max_value=MAX_RECORD_CENTS,
        required=False,
        allow_null=True,
        help_text="The call's cost as the client computed it; always wins. Absent or null: "
        "priced from model, provider and token counts (input_tokens or output_tokens must "
        "then be sent) by the tenant's price override in effect at created_at, else the "
        "price catalogue, else stored `unpriced` without a cost.",
    )
    is_retry = serializers.BooleanField(required=False, default=False)
    created_at = AwareDateTimeField(
        required=False, help_text="Default: receipt time; at most receipt time + 5 minutes."
    )


class CostRecordBatchInputSerializer(serializers.Serializer):
    records = CostRecordInputSerializer(many=True, min_length=1, max_length=1000)


class UnclassifiedReasonsSerializer(serializers.Serializer):
    unknown_feature_tag = serializers.IntegerField(
        help_text="Records whose feature tag the tenant has not registered."
    )
    inactive_feature_tag = serializers.IntegerField(
        help_text="Records whose feature tag is registered but deactivated."
    )


class UnclassifiedSummarySerializer(serializers.Serializer):
    count = serializers.IntegerField(
        help_text="Accepted records whose feature tag was stored as `unclassified`."
    )
    reasons = UnclassifiedReasonsSerializer()
    unknown_feature_tags = serializers.ListField(
        child=serializers.CharField(), help_text="The unregistered tags sent, sorted."
    )
    inactive_feature_tags = serializers.ListField(
        child=serializers.CharField(), help_text="The deactivated tags sent, sorted."
    )


class PricingSummarySerializer(serializers.Serializer):
    catalog = serializers.IntegerField(help_text="Accepted records priced by the catalogue.")
    override = serializers.IntegerField(
        help_text="Accepted records priced by one of the tenant's price overrides."
    )
    unpriced = serializers.IntegerField(
        help_text="Accepted records stored without a cost: neither the catalogue nor an "
        "override knows the model."
    )
    unpriced_models = serializers.ListField(
        child=serializers.CharField(),
        help_text="Their models, sorted; add an override under /model-prices/ and reprice.",
    )


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Records written.")
    duplicates = serializers.IntegerField(
        help_text="Records not written: their idempotency key was already used with the same "
        "payload, in the database or earlier in the batch."
    )
    unclassified = UnclassifiedSummarySerializer(
        help_text="Register a tag under /feature-tags/ (or reactivate it) for later records "
        "to keep it."
    )
    pricing = PricingSummarySerializer(
        help_text="How the accepted records sent without cost_cents were priced."
    )


class RunInputSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64, help_text="The client's run id.")
    worker_id = serializers.CharField(max_length=64)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    success = serializers.BooleanField(required=False, allow_null=True)
    error = serializers.CharField(required=False, allow_null=True)
    total_tokens = serializers.IntegerField(
        min_value=0, max_value=MAX_RUN_TOKENS, required=False, allow_null=True
    )
    total_latency_ms = serializers.IntegerField(
        min_value=0, max_value=MAX_RUN_LATENCY_MS, required=False, allow_null=True
    )
    cost_cents = serializers.DecimalField(
        max_digits=15,
        decimal_places=6,
        min_value=0,
        max_value=MAX_RUN_CENTS,
        required=False,
        allow_null=True,
    )
    is_retry = serializers.BooleanField(required=False)
    attempt = serializers.IntegerField(min_value=1, max_value=MAX_RUN_ATTEMPT, required=False)
    parent_run_id = serializers.CharField(max_length=64, required=False, allow_null=True)
    created_at = AwareDateTimeField(required=False)
    started_at = AwareDateTimeField(required=False, allow_null=True)
    completed_at = AwareDateTimeField(required=False, allow_null=True)


class RunBatchInputSerializer(serializers.Serializer):
    runs = RunInputSerializer(many=True, min_length=1, max_length=1000)


class RunUpsertResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


# --- reprice ---------------------------------------------------------------------------------


class RepriceInputSerializer(StrictSerializer):
    since = AwareDateTimeField(
        allow_date=True,
        help_text="Records created at or after this instant (a date: midnight UTC).",
    )
    until = AwareDateTimeField(
        allow_date=True,
        required=False,
        help_text="Records created before this instant (a date: midnight UTC); default: no end.",
    )
    model = serializers.CharField(
        max_length=64, required=False, help_text="Only records of this model name."
    )
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Report what would change; write nothing."
    )

    def validate(self, attrs):
        until = attrs.get("until")
        if until is not None and attrs["since"] >= until:
            raise serializers.ValidationError({"since": ["must be before 'until'"]})
        return attrs


class RepriceResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    records_examined = serializers.IntegerField(
        help_text="Records in the range priced by the service (client costs are never repriced)."
    )
    rows_changed = serializers.IntegerField(
        help_text="Records whose cost or cost_source changed (dry run: would change)."
    )
    cents_delta = serializers.DecimalField(
        max_digits=38,
        decimal_places=6,
        help_text="New minus old cost over the changed records, unpriced counting as 0.",
    )
    newly_priced = serializers.IntegerField(help_text="Unpriced records that now have a cost.")
    newly_unpriced = serializers.IntegerField(help_text="Records that lost their price.")
    snapshots_marked_stale = serializers.IntegerField(
        help_text="Complete snapshots of the changed periods marked stale (dry run: would be)."
    )
