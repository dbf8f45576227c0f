"""Writes of budgets. Spend and status are reads: see analytics/selectors/budgets.py."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from analytics.models import Budget, BudgetType, Tenant

DUPLICATE_SCOPE = "a budget for this scope already exists"
BUDGET_FIELDS = (
    "budget_type",
    "entity_id",
    "daily_limit_cents",
    "monthly_limit_cents",
    "warn_threshold_pct",
    "hard_limit_enabled",
    "is_active",
)


@transaction.atomic
def budget_create(*, tenant: Tenant, data: dict) -> Budget:
    """Create a budget from `data` (keys of BUDGET_FIELDS); ValidationError names the field."""
    budget = Budget(tenant=tenant)
    return _budget_save(budget=budget, data=data)


@transaction.atomic
def budget_update(*, budget: Budget, data: dict) -> Budget:
    """Apply the given fields (a partial update passes only what changed)."""
    return _budget_save(budget=budget, data=data)


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    # Anomalies keep their row; their budget FK is cleared by the model's on_delete.
    budget.delete()


def _budget_save(*, budget: Budget, data: dict) -> Budget:
    for name, value in data.items():
        if name not in BUDGET_FIELDS:
            raise ValueError(f"not a budget field: {name}")
        setattr(budget, name, value)
    _budget_validate(budget)
    try:
        budget.save()
    except IntegrityError as exc:
        # Two requests creating the same scope at once: the unique constraint decides.
        if "budget_tenant_scope_uniq" in str(exc):
            raise ValidationError({"entity_id": [DUPLICATE_SCOPE]}) from None
        raise
    return budget


# complexity: collects every problem of a budget (fields, scope, limits, duplicate scope) into one
# error naming each field
def _budget_validate(budget: Budget) -> None:
    errors: dict[str, list[str]] = {}
    try:
        budget.full_clean(exclude=["tenant"], validate_constraints=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if budget.budget_type == BudgetType.TENANT and budget.entity_id is not None:
        errors.setdefault("entity_id", []).append("must be null for a tenant budget")
    elif budget.budget_type != BudgetType.TENANT and budget.entity_id is None:
        errors.setdefault("entity_id", []).append("is required for feature and user budgets")
    if budget.daily_limit_cents is None and budget.monthly_limit_cents is None:
        errors.setdefault(NON_FIELD_ERRORS, []).append(
            "at least one of daily_limit_cents and monthly_limit_cents is required"
        )
    if "entity_id" not in errors and "budget_type" not in errors:
        duplicate = Budget.objects.filter(
            tenant_id=budget.tenant_id, budget_type=budget.budget_type, entity_id=budget.entity_id
        ).exclude(pk=budget.pk)
        if duplicate.exists():
            errors["entity_id"] = [DUPLICATE_SCOPE]
    if errors:
        raise ValidationError(errors)
