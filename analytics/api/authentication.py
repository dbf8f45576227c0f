"""`Authorization: Api-Key <key>` authentication bound to one tenant."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from analytics.models import ApiKey

KEYWORD = "Api-Key"
# last_used_at is written at most this often per key, so a busy key costs no extra write
# per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiKeyPrincipal:
    """The `request.user` of a request made with an API key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.tenant = api_key.tenant
        self.is_staff = api_key.is_staff
        self.username = api_key.actor

    def __str__(self) -> str:
        return self.api_key.actor


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword != KEYWORD:
            return None
        raw_key = raw_key.strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed("Invalid API key header: no key provided.")
        api_key = (
            ApiKey.objects.select_related("tenant")
            .filter(key_hash=ApiKey.hash_key(raw_key))
            .first()
        )
        if api_key is None or api_key.revoked_at is not None or not api_key.tenant.is_active:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive API key.")
        self._touch(api_key)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD

    @staticmethod
    def _touch(api_key: ApiKey) -> None:
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
            # Conditional update: concurrent requests of one key write once per window.
            ApiKey.objects.filter(pk=api_key.pk).exclude(
                last_used_at__gt=now - LAST_USED_RESOLUTION
            ).update(last_used_at=now)
            api_key.last_used_at = now


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "analytics.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Format: `Api-Key <key>`",
        }
