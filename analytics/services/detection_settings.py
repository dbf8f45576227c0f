"""Writes of what shapes a tenant's detection: its monitor settings and its planned activities.

Both are read afresh by every detection run (`analytics.selectors.incidents`), so a change
here changes what the next run opens; incidents already opened are left as they are.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from analytics.models import DetectionSettings, EntityType, PlannedActivity, Tenant
from analytics.selectors.incidents import SETTING_NAMES

PLANNED_ACTIVITY_FIELDS = (
    "starts_on",
    "ends_on",
    "entity_type",
    "entity_id",
    "expected_factor",
    "note",
)


@transaction.atomic
def detection_settings_update(
    *, tenant: Tenant, values: dict, actor: str, partial: bool
) -> DetectionSettings:
    """Store the tenant's settings; a None value puts that setting back to the project default.

    With `partial` False this replaces the whole set, so a setting missing from `values`
    goes back to its default too. The ranges are the model's validators; a bad value raises
    ValidationError naming the setting, and nothing is stored.
    """
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        raise ValueError(f"not a detection setting: {', '.join(unknown)}")
    # The row lock serialises two operators editing at once; a PATCH then applies on top
    # of whatever the other one committed.
    stored, _ = DetectionSettings.objects.select_for_update().get_or_create(tenant=tenant)
    for name in SETTING_NAMES:
        if name in values:
            setattr(stored, name, values[name])
        elif not partial:
            setattr(stored, name, None)
    stored.updated_by = actor
    stored.full_clean(exclude=["tenant"])
    stored.save()
    return stored


@transaction.atomic
def planned_activity_create(*, tenant: Tenant, data: dict, actor: str) -> PlannedActivity:
    """Create a plan from `data` (keys of PLANNED_ACTIVITY_FIELDS) recorded as made by `actor`.

    Raise ValidationError naming the field when the plan breaks a rule.
    """
    plan = PlannedActivity(tenant=tenant, created_by=actor)
    return _planned_activity_save(plan=plan, data=data)


@transaction.atomic
def planned_activity_update(*, planned_activity: PlannedActivity, data: dict) -> PlannedActivity:
    """Apply the given fields; the rules are checked on the plan as it will be stored."""
    return _planned_activity_save(plan=planned_activity, data=data)


@transaction.atomic
def planned_activity_delete(*, planned_activity: PlannedActivity) -> None:
    planned_activity.delete()


def _planned_activity_save(*, plan: PlannedActivity, data: dict) -> PlannedActivity:
    for name, value in data.items():
        if name not in PLANNED_ACTIVITY_FIELDS:
            raise ValueError(f"not a planned activity field: {name}")
        setattr(plan, name, value)
    errors: dict[str, list[str]] = {}
    try:
        # The table's check constraints say what the rules below say; these name the field.
        plan.full_clean(exclude=["tenant"], validate_constraints=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    for name, reason in _plan_rule_errors(plan).items():
        errors.setdefault(name, [reason])
    if errors:
        raise ValidationError(errors)
    plan.save()
    return plan


def _plan_rule_errors(plan: PlannedActivity) -> dict[str, str]:
    errors = {}
    if plan.starts_on and plan.ends_on and plan.ends_on < plan.starts_on:
        errors["ends_on"] = "must not be before starts_on"
    if plan.entity_type == EntityType.TENANT and plan.entity_id is not None:
        errors["entity_id"] = "must be null when entity_type is tenant"
    elif plan.entity_type != EntityType.TENANT and not plan.entity_id:
        errors["entity_id"] = f"is required when entity_type is {plan.entity_type}"
    return errors
