from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from analytics.models.tenancy import Tenant

# A reservation stands for one agent run or call about to happen; a day is the longest
# a run may hold budget before the expiry job hands it back.
MAX_RESERVATION_TTL_SECONDS = 24 * 3600
MAX_RESERVATION_CENTS = 10**12


class BudgetReservation(models.Model):
    """Budget set aside for a call or run before it happens.

    While open and unexpired, `amount_cents` counts against every active budget whose scope
    the reservation falls in (the tenant's, its feature's, its user's). It stops counting
    when cost records carrying its `request_id` or `run_id` arrive (settled: the records'
    actual cost replaces it), when the caller releases it, or at `expires_at`. Reads judge
    those three conditions themselves, so a reservation the expiry job has not reached yet
    is never counted twice.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    class Source(models.TextChoices):
        AMOUNT = "amount", "Amount"
        PLAN = "plan", "Plan estimate"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    amount_cents = models.BigIntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(MAX_RESERVATION_CENTS)]
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.AMOUNT)
    feature_tag = models.CharField(max_length=128, null=True, blank=True)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    request_id = models.CharField(max_length=64, null=True, blank=True)
    run_id = models.CharField(max_length=64, null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # When it stopped being open (settled, released or expired); NULL while open.
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gte=0), name="reservation_amount_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="reservation_expires_after"
            ),
            # Settlement finds the reservation's records by one of these ids.
            models.CheckConstraint(
                condition=Q(request_id__isnull=False) | Q(run_id__isnull=False),
                name="reservation_has_call_id",
            ),
            models.CheckConstraint(
                condition=(Q(status="open") & Q(closed_at__isnull=True))
                | (~Q(status="open") & Q(closed_at__isnull=False)),
                name="reservation_closed_iff_not_open",
            ),
            # One open reservation per call: a retried reserve finds the one it made (and
            # two concurrent retries cannot both insert). A call is its request_id, or its
            # run_id when it has no request_id; the calls of one run share the run_id.
            models.UniqueConstraint(
                fields=["tenant", "request_id"],
                condition=Q(status="open", request_id__isnull=False),
                name="reservation_open_request",
            ),
            models.UniqueConstraint(
                fields=["tenant", "run_id"],
                condition=Q(status="open", request_id__isnull=True),
                name="reservation_open_run",
            ),
        ]
        indexes = [
            # the reserve check, budget status and the expiry job: a tenant's open ones
            models.Index(
                fields=["tenant", "expires_at"],
                condition=Q(status="open"),
                name="reservation_open",
            ),
            # the API list, newest first
            models.Index(fields=["tenant", "-created_at", "-id"], name="reservation_tenant_time"),
        ]

    def __str__(self) -> str:
        call = self.request_id or self.run_id
        return f"{self.amount_cents}¢ for {call} ({self.status})"
