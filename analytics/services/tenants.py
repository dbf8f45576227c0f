"""Writes for tenants and API keys."""

from django.db import transaction
from django.utils import timezone

from analytics.models import ApiKey, Tenant
from analytics.models.tenancy import KEY_PREFIX_LENGTH


@transaction.atomic
def tenant_create(*, slug: str, name: str = "") -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug)
    tenant.full_clean()
    tenant.save()
    return tenant


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str = "", is_staff: bool = False) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored and shown once."""
    raw_key = ApiKey.generate_raw_key()
    api_key = ApiKey(
        tenant=tenant,
        name=name,
        is_staff=is_staff,
        prefix=raw_key[:KEY_PREFIX_LENGTH],
        key_hash=ApiKey.hash_key(raw_key),
    )
    api_key.full_clean()
    api_key.save()
    return api_key, raw_key


def api_keys_revoke(*, keys) -> int:
    """Revoke the given keys; already revoked keys keep their original revocation time."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
