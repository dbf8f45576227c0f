"""Writes for tenants and API keys, and the per-tenant loop every background job uses."""

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from analytics.models import ApiKey, Tenant
from analytics.models.tenancy import KEY_PREFIX_LENGTH

logger = logging.getLogger(__name__)

TenantDone = Callable[[Tenant, Any, Exception | None], None]


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


def tenants_run_each(
    work: Callable[[Tenant], Any],
    *,
    label: str,
    tenants: Iterable[Tenant] | None = None,
    on_tenant_done: TenantDone | None = None,
    reraise: tuple[type[Exception], ...] = (),
) -> tuple[list[tuple[Tenant, Any]], list[Tenant]]:
    """Call `work(tenant)` for each tenant (default: every active one), one transaction each.

    A tenant whose work raises is logged and skipped: its transaction rolls back and the
    other tenants still run. `on_tenant_done(tenant, result, error)` is called after each
    tenant. Exceptions of a `reraise` type are not the tenant's fault (a lost database
    connection): they end the loop, for the caller to retry. Returns `(succeeded, failed)`:
    `[(tenant, result)]` and `[tenant]`.

    The scheduled per-tenant jobs go through here, inline (`analytics.services.jobs`) or in
    the chunks of a fanned-out run (`analytics.services.job_runs`); backfills, retention and
    repricing walk their tenants themselves (docs/architecture.md lists them).
    """
    succeeded: list[tuple[Tenant, Any]] = []
    failed: list[Tenant] = []
    for tenant in Tenant.objects.active() if tenants is None else tenants:
        try:
            with transaction.atomic():
                result = work(tenant)
        except reraise:
            raise
        except Exception as exc:
            logger.exception("%s failed for tenant %s", label, tenant.slug)
            failed.append(tenant)
            if on_tenant_done:
                on_tenant_done(tenant, None, exc)
            continue
        succeeded.append((tenant, result))
        if on_tenant_done:
            on_tenant_done(tenant, result, None)
    return succeeded, failed
