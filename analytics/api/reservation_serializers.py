"""Input and output of the budget reservation endpoints."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.api.fields import AwareDateTimeField, StrictSerializer
from analytics.api.views import validated
from analytics.models import BudgetPeriod, BudgetReservation, BudgetType
from analytics.models.reservations import MAX_RESERVATION_CENTS, MAX_RESERVATION_TTL_SECONDS
from analytics.services.reservations import CheckState

DEFAULT_TTL_SECONDS = 600
ONE_OF_AMOUNT_OR_PLAN = "give either amount_cents or plan"
NOT_BOTH_AMOUNT_AND_PLAN = "give either amount_cents or plan, not both"
CALL_ID_REQUIRED = "request_id or run_id is required: the cost records that settle the "
CALL_ID_REQUIRED += "reservation carry one of them"
UNSTORABLE = "contains characters that cannot be stored (an unpaired surrogate)"


def _storable(value: str) -> None:
    # JSON escapes can carry unpaired surrogates, which no UTF-8 column can hold. NUL is
    # already refused by DRF's CharField.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError(UNSTORABLE) from None


def _attribution(max_length: int, help_text: str) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length,
        required=False,
        allow_null=True,
        allow_blank=False,
        validators=[_storable],
        help_text=help_text,
    )


@extend_schema_field(
    {
        "type": "array",
        "minItems": 1,
        "items": {"type": "object", "additionalProperties": True},
        "description": "A plan as `POST /costsim/simulate/` takes it; reserved at its "
        "authoritative (V1) estimated cost.",
    }
)
class PlanField(serializers.JSONField):
    """Any JSON; the plan's own validation (costsim's) names the step at fault."""


class ReserveInputSerializer(StrictSerializer):
    amount_cents = serializers.IntegerField(
        min_value=0, max_value=MAX_RESERVATION_CENTS, required=False, allow_null=True
    )
    plan = PlanField(required=False, allow_null=True)
    feature_tag = _attribution(128, "The feature the call's cost records will carry.")
    user_id = _attribution(64, "The user the call's cost records will carry.")
    request_id = _attribution(64, "Sent on the call's cost records, it settles the reservation.")
    run_id = _attribution(64, "Sent on the run's cost records, it settles the reservation.")
    ttl_seconds = serializers.IntegerField(
        min_value=1,
        max_value=MAX_RESERVATION_TTL_SECONDS,
        required=False,
        default=DEFAULT_TTL_SECONDS,
        help_text="After this, an unsettled reservation no longer holds budget.",
    )

    def validate(self, attrs):
        has_amount = attrs.get("amount_cents") is not None
        has_plan = attrs.get("plan") is not None
        if has_amount and has_plan:
            raise serializers.ValidationError({"amount_cents": [NOT_BOTH_AMOUNT_AND_PLAN]})
        if not has_amount and not has_plan:
            raise serializers.ValidationError({"amount_cents": [ONE_OF_AMOUNT_OR_PLAN]})
        if attrs.get("request_id") is None and attrs.get("run_id") is None:
            raise serializers.ValidationError({"request_id": [CALL_ID_REQUIRED]})
        return attrs


class BudgetCheckSerializer(serializers.Serializer):
    budget_id = serializers.IntegerField()
    budget_type = serializers.ChoiceField(choices=BudgetType.choices)
    entity_id = serializers.CharField(allow_null=True)
    period = serializers.ChoiceField(choices=BudgetPeriod.choices)
    hard_limit_enabled = serializers.BooleanField()
    warn_threshold_pct = serializers.IntegerField()
    limit_cents = serializers.IntegerField()
    # A period's spend is a sum of records: as wide as a snapshot's total.
    spend_cents = serializers.DecimalField(max_digits=38, decimal_places=6)
    reserved_cents = serializers.IntegerField(
        help_text="Held by other open reservations, this one excluded."
    )
    remaining_cents = serializers.DecimalField(
        max_digits=38,
        decimal_places=6,
        help_text="limit − spend − reserved, and − this reservation when allowed; "
        "negative once over the limit.",
    )
    state = serializers.ChoiceField(
        choices=[
            CheckState.OK,
            CheckState.WARNING,
            CheckState.OVER_LIMIT,
            CheckState.REFUSED,
        ],
        help_text="`refused`: a hard budget this reservation would take past its limit; "
        "`over_limit`: a soft one (allowed); `warning`: the warning threshold is reached.",
    )
    reason = serializers.CharField(allow_null=True)


class RefusalSerializer(serializers.Serializer):
    budget_id = serializers.IntegerField()
    period = serializers.ChoiceField(choices=BudgetPeriod.choices)
    reason = serializers.CharField()


class ReserveResultSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    reservation_id = serializers.IntegerField(allow_null=True)
    replayed = serializers.BooleanField(
        help_text="True when the call (request_id, else run_id) already held this open "
        "reservation: a retry, answered again and held once."
    )
    amount_cents = serializers.IntegerField()
    expires_at = AwareDateTimeField(allow_null=True)
    budgets = BudgetCheckSerializer(many=True, help_text="Every budget period that applies.")
    refused_by = RefusalSerializer(many=True, help_text="Empty when allowed.")


class ReservationSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(
        source="current_status",
        choices=BudgetReservation.Status.choices,
        help_text="`settled` as soon as a cost record carries its request_id or run_id, "
        "`expired` once past expires_at.",
    )
    created_at = AwareDateTimeField()
    expires_at = AwareDateTimeField()
    closed_at = AwareDateTimeField(allow_null=True)

    class Meta:
        model = BudgetReservation
        fields = (
            "id",
            "amount_cents",
            "source",
            "feature_tag",
            "user_id",
            "request_id",
            "run_id",
            "status",
            "created_at",
            "expires_at",
            "closed_at",
        )
        read_only_fields = fields


_ATTRIBUTION_LENGTHS = {"feature_tag": 128, "user_id": 64, "request_id": 64, "run_id": 64}
_RESERVE_FIELDS = frozenset(ReserveInputSerializer._declared_fields)


def _plain_attribution(value, max_length: int) -> bool:
    # What CharField keeps as it is: a non-blank ASCII string without NUL or surrounding
    # whitespace (which it would trim), within the length.
    return value is None or (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and value == value.strip()
    )


# complexity: each field's plain form is one condition of the fast reading; anything else goes to
# the serializer
def reserve_input(data) -> dict:
    """The reserve body as ReserveInputSerializer validates it.

    The body of the usual call (an integer amount, plain ASCII attribution, an integer TTL
    or none) is taken as it is, which is exactly what the serializer would answer for it;
    anything else, every error included, goes through the serializer, so refusals keep its
    messages. Building the serializer costs a copy of its fields per request, a tenth of
    the worker's CPU per reserve.
    """
    if not (type(data) is dict and _RESERVE_FIELDS.issuperset(data)):
        return validated(ReserveInputSerializer, data)
    amount = data.get("amount_cents")
    ttl = data.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if (
        type(amount) is int
        and 0 <= amount <= MAX_RESERVATION_CENTS
        and data.get("plan") is None
        and type(ttl) is int
        and 1 <= ttl <= MAX_RESERVATION_TTL_SECONDS
        and (data.get("request_id") is not None or data.get("run_id") is not None)
        and all(
            _plain_attribution(data.get(name), length)
            for name, length in _ATTRIBUTION_LENGTHS.items()
        )
    ):
        return {**data, "ttl_seconds": ttl}
    return validated(ReserveInputSerializer, data)
