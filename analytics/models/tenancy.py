import hashlib
import secrets
import string

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

KEY_ALPHABET = string.ascii_letters + string.digits
KEY_PREFIX_LENGTH = 11  # "ck_" plus the first 8 random characters, shown in the admin
# A tenant's raw cost records are kept at least a month (the current month's statistics and
# budgets read them) and at most about ten years.
RETENTION_DAYS_MIN = 31
RETENTION_DAYS_MAX = 3660


class TenantQuerySet(models.QuerySet):
    def active(self):
        """Tenants that jobs run for, in a stable order."""
        return self.filter(is_active=True).order_by("pk")


class Tenant(models.Model):
    slug = models.CharField(
        max_length=63,
        unique=True,
        validators=[
            RegexValidator(r"^[a-z0-9][a-z0-9-]{1,62}$", "Lower-case letters, digits, '-'.")
        ],
    )
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # NULL: the project default, COSTWISE_RECORD_RETENTION_DAYS. Snapshots, anomalies and
    # incidents are kept whatever it says.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(RETENTION_DAYS_MIN), MaxValueValidator(RETENTION_DAYS_MAX)],
        help_text="Days raw cost records are kept; empty for the project default.",
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(retention_days__isnull=True)
                | Q(retention_days__gte=RETENTION_DAYS_MIN, retention_days__lte=RETENTION_DAYS_MAX),
                name="tenant_retention_days_range",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args, **kwargs) -> None:
        if not self.name:
            self.name = self.slug
        super().save(*args, **kwargs)


class ApiKeyQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(revoked_at__isnull=True, tenant__is_active=True)


class ApiKey(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=KEY_PREFIX_LENGTH, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def actor(self) -> str:
        """The actor string recorded on lifecycle actions made with this key."""
        return f"api-key:{self.prefix}"

    @staticmethod
    def generate_raw_key() -> str:
        return "ck_" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(40))

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()
