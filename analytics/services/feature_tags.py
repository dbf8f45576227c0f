"""Writes of feature tags. Cost records store the tag text, so no write here touches them."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from analytics.models import FeatureTag, Tenant

DUPLICATE_TAG = "a feature tag with this tag already exists"
FEATURE_TAG_FIELDS = ("tag", "display_name", "description", "budget_cents", "is_active")


@transaction.atomic
def feature_tag_create(*, tenant: Tenant, data: dict) -> FeatureTag:
    """Create a tag from `data` (keys of FEATURE_TAG_FIELDS); ValidationError names the field."""
    return _feature_tag_save(feature_tag=FeatureTag(tenant=tenant), data=data)


@transaction.atomic
def feature_tag_update(*, feature_tag: FeatureTag, data: dict) -> FeatureTag:
    """Apply the given fields. Renaming a tag leaves stored cost records as they are."""
    return _feature_tag_save(feature_tag=feature_tag, data=data)


@transaction.atomic
def feature_tag_delete(*, feature_tag: FeatureTag) -> None:
    feature_tag.delete()


def _feature_tag_save(*, feature_tag: FeatureTag, data: dict) -> FeatureTag:
    for name, value in data.items():
        if name not in FEATURE_TAG_FIELDS:
            raise ValueError(f"not a feature tag field: {name}")
        setattr(feature_tag, name, value)
    errors: dict[str, list[str]] = {}
    try:
        feature_tag.full_clean(exclude=["tenant"], validate_constraints=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if "tag" not in errors:
        duplicate = FeatureTag.objects.filter(
            tenant_id=feature_tag.tenant_id, tag=feature_tag.tag
        ).exclude(pk=feature_tag.pk)
        if duplicate.exists():
            errors["tag"] = [DUPLICATE_TAG]
    if errors:
        raise ValidationError(errors)
    try:
        feature_tag.save()
    except IntegrityError as exc:
        # A concurrent request created the same tag between the check and the insert.
        if "featuretag_tenant_tag_uniq" in str(exc):
            raise ValidationError({"tag": [DUPLICATE_TAG]}) from None
        raise
    return feature_tag
