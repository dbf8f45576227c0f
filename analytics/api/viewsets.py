"""Small base pieces shared by tenant-scoped viewsets of every app."""

from analytics.api.permissions import request_tenant


class TenantScopedMixin:
    """Scopes reads and writes to the caller's tenant; another tenant's object is a 404.

    Subclasses implement `get_tenant_queryset(tenant)`, usually by calling a selector.
    """

    def get_tenant(self):
        return request_tenant(self.request)

    def get_queryset(self):
        return self.get_tenant_queryset(self.get_tenant())

    def get_tenant_queryset(self, tenant):
        raise NotImplementedError
