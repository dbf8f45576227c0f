"""Who may call what: tenant keys (K), staff (S), any authenticated caller (A)."""

from rest_framework import exceptions, permissions

from analytics.actors import user_actor
from analytics.models import ApiKey, Tenant


class TenantRequired(exceptions.PermissionDenied):
    default_detail = "This endpoint needs a tenant API key."
    default_code = "tenant_required"


def request_tenant(request) -> Tenant:
    """The tenant of the API key that authenticated the request."""
    return request.auth.tenant


def request_actor(request) -> str:
    """Actor string recorded on lifecycle actions: `api-key:<prefix>` or `user:<username>`."""
    if isinstance(request.auth, ApiKey):
        return request.auth.actor
    return user_actor(request)


def _is_authenticated(request) -> bool:
    return bool(request.user and request.user.is_authenticated)


class IsTenantKey(permissions.BasePermission):
    """K: a tenant API key; a staff session without a key gets 403 `tenant_required`."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        if _is_authenticated(request):
            raise TenantRequired()
        return False


class IsStaff(permissions.BasePermission):
    """S: a staff session or a staff API key."""

    message = "Staff only."

    def has_permission(self, request, view) -> bool:
        return _is_authenticated(request) and bool(getattr(request.user, "is_staff", False))


class IsAuthenticatedCaller(permissions.BasePermission):
    """A: any authenticated caller; used only for global (not tenant-owned) data."""

    def has_permission(self, request, view) -> bool:
        return _is_authenticated(request)
