"""The `--tenant SLUG` option shared by the per-tenant job commands of every app."""

from django.core.management.base import CommandError

from analytics.models import Tenant


def tenants_for_option(slug: str | None) -> list[Tenant]:
    """Every active tenant without a slug, else that one tenant; CommandError if it is
    unknown or inactive (jobs never run for inactive tenants)."""
    if slug is None:
        return list(Tenant.objects.active())
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"Unknown tenant {slug!r}.")
    if not tenant.is_active:
        raise CommandError(f"Tenant {slug!r} is inactive.")
    return [tenant]
