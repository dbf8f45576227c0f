"""`Authorization: Api-Key <key>` authentication bound to one tenant."""

from datetime import timedelta

from django.db import connection
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from analytics.models import ApiKey, Tenant
from analytics.selectors.tenancy import API_KEY_GENERATION_SQL

KEYWORD = "Api-Key"
# last_used_at is written at most this often per key, so a busy key costs no extra write
# per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# Keys are looked up by hash once per process and kept with the value of the key generation
# (migration 0005) at the moment they were read. The generation moves, in the same
# transaction, with every change to a key or a tenant, so each request compares it with the
# cached value: one primary-key read of a one-row table, about the cost of `SELECT 1`. A
# key revoked or a tenant deactivated by any path is refused from the next request on, in
# every process; an unchanged generation means the cached row is still what the tables say.
# Unknown and refused keys are never cached.
_KEY_FIELDS = tuple(field.attname for field in ApiKey._meta.concrete_fields)
_TENANT_FIELDS = tuple(field.attname for field in Tenant._meta.concrete_fields)
_TENANT_CACHE = ApiKey._meta.get_field("tenant")
# The generation is read in the same statement, so it belongs to the snapshot of the row.
# Plain SQL: the ORM took about 2 ms of CPU per lookup here, compiling the join and the
# default ordering.
_KEY_LOOKUP_SQL = f"""
SELECT ({API_KEY_GENERATION_SQL}),
       {", ".join(f"k.{name}" for name in _KEY_FIELDS)},
       {", ".join(f"t.{name}" for name in _TENANT_FIELDS)}
FROM analytics_apikey k
JOIN analytics_tenant t ON t.id = k.tenant_id
WHERE k.key_hash = %s AND k.revoked_at IS NULL AND t.is_active
"""
KEY_CACHE_MAX_ENTRIES = 1024
# key_hash -> (generation, ApiKey with its Tenant). The instances are shared by the requests
# of a process, as read-only values; only last_used_at is refreshed in place.
_usable_keys: dict[str, tuple[int | None, ApiKey]] = {}


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
        api_key = self._usable_key(ApiKey.hash_key(raw_key), request)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD

    def defer_generation_check(self, request, generation: int | None) -> bool:
        """True when the view checks the cached key's `generation` itself, later in the
        request and before it writes or reports anything; then no statement runs here.

        A view that accepts must compare the generation in its first statement and call
        `recheck` when it moved. None here: every request checks it now.
        """
        return False

    def recheck(self, request) -> tuple["ApiKeyPrincipal", ApiKey]:
        """Look the request's key up again, ignoring this process's cache; raise
        AuthenticationFailed when it is no longer usable."""
        header = authentication.get_authorization_header(request).decode("latin-1")
        _usable_keys.pop(ApiKey.hash_key(header.partition(" ")[2].strip()), None)
        authenticated = self.authenticate(request)
        if authenticated is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive API key.")
        return authenticated

    def read_generation(self, cursor, request) -> int | None:
        """The key generation now. Called on each request that presents a key this process
        has cached (not when the key has to be looked up); a subclass may read what its view
        needs in the same statement, saving the request a round trip."""
        cursor.execute(API_KEY_GENERATION_SQL)
        row = cursor.fetchone()
        return None if row is None else row[0]

    def _usable_key(self, key_hash: str, request) -> ApiKey | None:
        """The key with its tenant, or None when it is unknown, revoked or of an inactive
        tenant; records last_used_at at most once per LAST_USED_RESOLUTION per key and
        process."""
        cached = _usable_keys.get(key_hash)
        if cached is None or not self.defer_generation_check(request, cached[0]):
            with connection.cursor() as cursor:
                if cached is not None and self.read_generation(cursor, request) != cached[0]:
                    cached = None
                if cached is None:
                    cached = _key_lookup(cursor, key_hash)
                    if cached is None:
                        _usable_keys.pop(key_hash, None)
                        return None
                    if len(_usable_keys) >= KEY_CACHE_MAX_ENTRIES:
                        # Many distinct keys in one process is rare; starting over bounds
                        # memory.
                        _usable_keys.clear()
                    _usable_keys[key_hash] = cached
        api_key = cached[1]
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
            # Conditional update: concurrent requests of one key write once per window. It
            # writes last_used_at alone, which leaves the key generation where it is.
            ApiKey.objects.filter(pk=api_key.pk).exclude(
                last_used_at__gt=now - LAST_USED_RESOLUTION
            ).update(last_used_at=now)
            api_key.last_used_at = now
        return api_key


def _key_lookup(cursor, key_hash: str) -> tuple[int | None, ApiKey] | None:
    """(generation, usable key with its tenant) read in one snapshot, or None."""
    cursor.execute(_KEY_LOOKUP_SQL, [key_hash])
    row = cursor.fetchone()
    if row is None:
        return None
    split = 1 + len(_KEY_FIELDS)
    api_key = ApiKey.from_db(connection.alias, _KEY_FIELDS, row[1:split])
    _TENANT_CACHE.set_cached_value(
        api_key, Tenant.from_db(connection.alias, _TENANT_FIELDS, row[split:])
    )
    return row[0], api_key


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
