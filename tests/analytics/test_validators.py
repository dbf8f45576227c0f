"""The shared field validators, and the schema-only serializers that describe the bodies they
check: both must name the same fields, the same required ones and the same bounds."""

from decimal import Decimal

import pytest
from rest_framework import serializers
from rest_framework.fields import empty

from analytics.api.batches import COST_RECORD_FIELDS, MAX_BATCH_ITEMS, RUN_FIELDS
from analytics.api.serializers import (
    CostRecordBatchInputSerializer,
    CostRecordInputSerializer,
    RunBatchInputSerializer,
    RunInputSerializer,
)
from analytics.validators import (
    Field,
    FieldInvalid,
    Fields,
    cents,
    check_object,
    integer,
    optional_string,
)
from costsim.api.serializers import (
    BODY_FIELDS,
    STEP_FIELDS,
    SimulationBodySerializer,
    SimulationStepSerializer,
)


def _pattern(field: serializers.Field) -> str | None:
    for validator in field.validators:
        regex = getattr(validator, "regex", None)
        if regex is not None:
            return regex.pattern
    return None


def _schema_spec(field: serializers.Field) -> dict:
    """What the OpenAPI schema promises about one field, in the validators' vocabulary."""
    nullable = field.allow_null
    if isinstance(field, serializers.ListSerializer | serializers.ListField):
        spec = {"type": "list", "max_length": field.max_length, "nullable": nullable}
        if field.min_length is not None:
            spec["min_length"] = field.min_length
        child = getattr(field, "child", None)
        if isinstance(child, serializers.RegexField):
            spec["pattern"] = _pattern(child)
        return spec
    if isinstance(field, serializers.IntegerField | serializers.DecimalField):
        kind = "integer" if isinstance(field, serializers.IntegerField) else "decimal"
        bounds = {"minimum": field.min_value, "maximum": field.max_value}
        return {"type": kind, **bounds, "nullable": nullable}
    if isinstance(field, serializers.ChoiceField):
        return {"type": "choice", "choices": tuple(field.choices), "nullable": nullable}
    if isinstance(field, serializers.BooleanField):
        return {"type": "boolean", "nullable": nullable}
    if isinstance(field, serializers.DateTimeField):
        return {"type": "datetime", "nullable": nullable}
    if isinstance(field, serializers.DictField):
        return {"type": "object", "nullable": nullable}
    if isinstance(field, serializers.RegexField):
        return {"type": "string", "pattern": _pattern(field), "nullable": nullable}
    if isinstance(field, serializers.CharField):
        return {"type": "string", "max_length": field.max_length, "nullable": nullable}
    raise AssertionError(f"no spec for {type(field).__name__}")


def _validator_spec(spec: Field) -> dict:
    described = dict(spec.spec)
    if "pattern" in described:
        # The serializers anchor the pattern; the validators match it whole.
        described["pattern"] = f"^{described['pattern']}$"
    return described


def _schema_table(serializer: serializers.Serializer) -> dict:
    return {
        name: (field.required, _schema_spec(field)) for name, field in serializer.fields.items()
    }


def _validator_table(fields: tuple[Field, ...]) -> dict:
    return {spec.name: (spec.required, _validator_spec(spec)) for spec in fields}


@pytest.mark.parametrize(
    ("serializer", "fields"),
    [
        (CostRecordInputSerializer(), COST_RECORD_FIELDS),
        (RunInputSerializer(), RUN_FIELDS),
        (SimulationBodySerializer(), BODY_FIELDS),
        (SimulationStepSerializer(), STEP_FIELDS),
    ],
    ids=["cost-record", "run", "simulation-body", "simulation-step"],
)
def test_schema_serializer_agrees_with_the_validators(serializer, fields):
    # when both sides describe their fields
    schema = _schema_table(serializer)
    validators = _validator_table(fields)

    # then they name the same fields, the same required ones and the same bounds
    assert schema.keys() == validators.keys()
    for name in schema:
        assert schema[name] == validators[name], name


@pytest.mark.parametrize(
    ("serializer", "fields"),
    [
        (CostRecordInputSerializer(), COST_RECORD_FIELDS),
        (SimulationBodySerializer(), BODY_FIELDS),
        (SimulationStepSerializer(), STEP_FIELDS),
    ],
    ids=["cost-record", "simulation-body", "simulation-step"],
)
def test_schema_defaults_are_the_defaults_the_validators_fill_in(serializer, fields):
    defaults = {spec.name: spec.default for spec in fields}
    for name, field in serializer.fields.items():
        if field.default is not empty:
            assert field.default == defaults[name], name


@pytest.mark.parametrize(
    "serializer", [CostRecordBatchInputSerializer(), RunBatchInputSerializer()]
)
def test_schema_batch_bounds_are_the_parsers(serializer):
    (items,) = serializer.fields.values()
    assert (items.min_length, items.max_length) == (1, MAX_BATCH_ITEMS)


def test_a_serializer_bound_that_drifts_from_its_validator_is_seen():
    # given a schema that says 100 where the validator says 10
    class Drifted(serializers.Serializer):
        count = serializers.IntegerField(min_value=0, max_value=100)

    fields = (Field("count", integer(minimum=0, maximum=10), required=True),)

    # then the comparison tells them apart
    assert _schema_table(Drifted()) != _validator_table(fields)


def test_check_object_collects_every_problem_by_path():
    fields = Fields(
        Field("name", optional_string(8)),
        Field("count", integer(minimum=1, maximum=3), required=True),
        Field("cost", cents(maximum=10), default=Decimal(0)),
    )

    row, errors = check_object({"name": 5, "extra": 1}, fields, path="items[2]")

    assert errors == {
        "items[2].extra": ["unknown field"],
        "items[2].name": ["must be a string"],
        "items[2].count": ["is required"],
    }
    assert row == {"cost": Decimal(0)}


def test_check_object_fills_fresh_defaults_and_nests_reasons():
    def pair(value):
        if value != [1, 2]:
            raise FieldInvalid(nested={"[1]": ["must be 2"]})
        return value

    fields = Fields(Field("params", dict, default=dict), Field("pair", pair))

    first, _ = check_object({}, fields)
    second, _ = check_object({}, fields)
    _, errors = check_object({"pair": [1, 3]}, fields)

    assert first["params"] == {} and first["params"] is not second["params"]
    assert errors == {"pair[1]": ["must be 2"]}


@pytest.mark.parametrize(
    ("check", "value", "reason"),
    [
        (integer(minimum=1, maximum=5, range_message="must be between 1 and 5"), 9, "between"),
        (integer(minimum=0, null_message="must be an integer"), None, "must be an integer"),
        (integer(minimum=0, maximum=None), True, "must be an integer"),
        (optional_string(4, message="must be a short string"), "", "must be a short string"),
    ],
)
def test_checks_word_their_reasons_as_asked(check, value, reason):
    with pytest.raises(FieldInvalid) as raised:
        check(value)
    assert reason in raised.value.message


def test_integer_without_maximum_takes_any_size():
    assert integer(minimum=0, maximum=None)(10**30) == 10**30
