"""Output shapes of the usage and cost statistics.

The views answer with the dictionaries `analytics.services.statistics` builds; these
serializers describe them in the OpenAPI document. Money is exact: cents and dollars are
JSON numbers written from Decimals, never rounded through a float.
"""

from rest_framework import serializers

from analytics.api.fields import AwareDateTimeField
from analytics.selectors.statistics import RESOLUTIONS

BUCKET_HELP = "`YYYY-MM-DD` for days, `YYYY-MM-DDTHH:00:00Z` for hours (UTC buckets)."
SIGNAL_SOURCES = ("cost_records", "run_records", "none")


def _cents(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=24, decimal_places=6, **kwargs)


class StatisticsWindowSerializer(serializers.Serializer):
    """The half-open window `[from, to)` and the bucket size that answered."""

    def get_fields(self):
        # `from` is a Python keyword, so it cannot be a class attribute.
        return {
            "from": AwareDateTimeField(),
            "to": AwareDateTimeField(),
            "resolution": serializers.ChoiceField(choices=RESOLUTIONS),
        }


class StatisticsSignalsSerializer(serializers.Serializer):
    sources = serializers.ListField(
        child=serializers.ChoiceField(choices=SIGNAL_SOURCES),
        help_text="Which records the window holds; `none` when it holds nothing.",
    )
    freshness_sec = serializers.IntegerField(
        min_value=0, help_text="Seconds since the newest bucket with data began; 0 without data."
    )


class UsageTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    compute_units = serializers.IntegerField(help_text="Run records.")
    tokens = serializers.IntegerField(help_text="Input plus output tokens.")


class UsagePointSerializer(serializers.Serializer):
    ts = serializers.CharField(help_text=BUCKET_HELP)
    requests = serializers.IntegerField()
    compute_units = serializers.IntegerField()
    tokens = serializers.IntegerField()


class UsageStatisticsSerializer(serializers.Serializer):
    window = StatisticsWindowSerializer()
    totals = UsageTotalsSerializer()
    series = UsagePointSerializer(many=True, help_text="Buckets with data, oldest first.")
    signals = StatisticsSignalsSerializer()


class CostPointSerializer(serializers.Serializer):
    ts = serializers.CharField(help_text=BUCKET_HELP)
    spend_cents = _cents()
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    unpriced_records = serializers.IntegerField(
        help_text="Records without a cost (model unknown to the catalogue and the tenant's "
        "price overrides); spend counts them as 0."
    )


class CostTotalsSerializer(serializers.Serializer):
    spend_cents = _cents()
    spend_usd = serializers.DecimalField(max_digits=24, decimal_places=8)
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    unpriced_records = serializers.IntegerField(
        help_text="Records without a cost (model unknown to the catalogue and the tenant's "
        "price overrides); spend counts them as 0."
    )


class ModelCostSerializer(serializers.Serializer):
    model = serializers.CharField()
    spend_cents = _cents()
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    unpriced_records = serializers.IntegerField(
        help_text="Records without a cost (model unknown to the catalogue and the tenant's "
        "price overrides); spend counts them as 0."
    )
    pct_of_total = serializers.FloatField(help_text="Share of the window's spend, 2 dp.")


class FeatureCostSerializer(serializers.Serializer):
    feature_tag = serializers.CharField(help_text="`untagged` for records without a tag.")
    spend_cents = _cents()
    requests = serializers.IntegerField()
    pct_of_total = serializers.FloatField(help_text="Share of the window's spend, 2 dp.")


class CostStatisticsSerializer(serializers.Serializer):
    window = StatisticsWindowSerializer()
    totals = CostTotalsSerializer()
    series = CostPointSerializer(many=True, help_text="Buckets with data, oldest first.")
    by_model = ModelCostSerializer(many=True, help_text="Most spend first.")
    by_feature = FeatureCostSerializer(many=True, help_text="Most spend first.")
    signals = StatisticsSignalsSerializer()
