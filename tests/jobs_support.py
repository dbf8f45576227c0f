"""Helpers shared by the job tests (tests/test_jobs.py, tests/test_jobs_sweeper.py)."""

from django.db import OperationalError

from analytics.models import CostSnapshot
from analytics.services import jobs as jobs_module


def snapshot_versions() -> list[int]:
    return list(CostSnapshot.objects.order_by("tenant_id").values_list("version", flat=True))


def lose_connection_once_at(monkeypatch, slug: str) -> list[str]:
    """Make the snapshot job lose its database connection the first time it reaches `slug`;
    return the list of tenant slugs it is called for, filled as it runs."""
    real = jobs_module.snapshot_compute
    calls = []

    def flaky(*, tenant, **kwargs):
        calls.append(tenant.slug)
        if tenant.slug == slug and calls.count(slug) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(tenant=tenant, **kwargs)

    monkeypatch.setattr(jobs_module, "snapshot_compute", flaky)
    return calls
