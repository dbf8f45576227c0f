from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from analytics.models.choices import BudgetType, RunStatus
from analytics.models.tenancy import Tenant

UNCLASSIFIED_TAG = "unclassified"


class CostSource(models.TextChoices):
    """How a cost record's cost was obtained."""

    CLIENT = "client", "Sent by the client"
    CATALOG = "catalog", "Price catalogue"
    OVERRIDE = "override", "Tenant price override"
    UNPRICED = "unpriced", "Unpriced"


class CostRecord(models.Model):
    """One LLM call as billed. Append-only: no update path; only retention deletes.

    The table is partitioned by month of `created_at` (`analytics.services.partitions`); its
    primary key in the database is (id, created_at), `id` alone is unique by its sequence.
    A record's idempotency key is unique per tenant through `CostRecordKey`.
    """

    # No index of its own: costrecord_tenant_time leads with tenant_id.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", db_index=False)
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    feature_tag = models.CharField(max_length=128, null=True, blank=True)
    request_id = models.CharField(max_length=64, null=True, blank=True)
    workflow_id = models.CharField(max_length=64, null=True, blank=True)
    run_id = models.CharField(max_length=64, null=True, blank=True)
    skill_id = models.CharField(max_length=64, null=True, blank=True)
    model = models.CharField(max_length=64)
    provider = models.CharField(max_length=64, null=True, blank=True)
    # input_tokens counts every input token, cached ones included (as OpenAI and the
    # OpenTelemetry GenAI conventions report it); the cache counts are the parts of it read
    # from and written to the provider's prompt cache.
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    # Database defaults too: bulk loaders writing SQL of their own need not know the columns.
    cache_read_tokens = models.BigIntegerField(default=0, db_default=0)
    cache_write_tokens = models.BigIntegerField(default=0, db_default=0)
    # NULL only when unpriced: an unknown model is never silently free.
    cost_cents = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    cost_source = models.CharField(
        max_length=8,
        choices=CostSource.choices,
        default=CostSource.CLIENT,
        db_default=CostSource.CLIENT,
    )
    # The catalogue consulted for a record the service priced (catalog, override or
    # unpriced), e.g. "genai-prices 0.2.3"; NULL for client costs.
    price_catalog_version = models.CharField(max_length=32, null=True, blank=True)
    is_retry = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    ingested_at = models.DateTimeField()
    # The tag as the client sent it, kept whenever feature_tag is stored as `unclassified`
    # (an unknown or inactive tag, or `unclassified` itself), so a key sent again can be
    # compared with what was sent. NULL otherwise, and on records ingested before it existed.
    sent_feature_tag = models.CharField(max_length=128, null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_cents__isnull=True) | Q(cost_cents__gte=0),
                name="costrecord_cost_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(input_tokens__gte=0) & Q(output_tokens__gte=0),
                name="costrecord_tokens_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(cache_read_tokens__gte=0)
                & Q(cache_write_tokens__gte=0)
                & Q(input_tokens__gte=F("cache_read_tokens") + F("cache_write_tokens")),
                name="costrecord_cache_tokens_in_input",
            ),
            # No cost exactly when unpriced.
            models.CheckConstraint(
                condition=(Q(cost_source=CostSource.UNPRICED) & Q(cost_cents__isnull=True))
                | (~Q(cost_source=CostSource.UNPRICED) & Q(cost_cents__isnull=False)),
                name="costrecord_cost_iff_priced",
            ),
            models.CheckConstraint(
                condition=Q(cost_source__in=CostSource.values), name="costrecord_cost_source"
            ),
        ]
        indexes = [
            # statistics, snapshots and detection: the tenant's spend in a time window
            models.Index(fields=["tenant", "created_at"], name="costrecord_tenant_time"),
            # feature budgets, feature spikes and contributors
            models.Index(
                fields=["tenant", "feature_tag", "created_at"], name="costrecord_feature_time"
            ),
            # user budgets and user spikes
            models.Index(fields=["tenant", "user_id", "created_at"], name="costrecord_user_time"),
            # model breakdowns and the statistical detector per model
            models.Index(fields=["tenant", "model", "created_at"], name="costrecord_model_time"),
            # calibration joins estimates to actual records by run, workflow or request id
            models.Index(fields=["tenant", "run_id"], name="costrecord_run"),
            models.Index(fields=["tenant", "workflow_id"], name="costrecord_workflow"),
            models.Index(fields=["tenant", "request_id"], name="costrecord_request"),
        ]

    def __str__(self) -> str:
        cost = "unpriced" if self.cost_cents is None else f"{self.cost_cents}¢"
        return f"{self.model} {cost} at {self.created_at:%Y-%m-%d %H:%M}"


class CostRecordKey(models.Model):
    """The idempotency key of a cost record, unique per tenant across every partition.

    A partitioned table's unique indexes must contain the partition key, so the key lives
    here; ingest writes it and its record in one statement. It lives as long as its record:
    retention deletes it with the record, or from a month partition detached to be dropped.
    """

    pk = models.CompositePrimaryKey("tenant", "idempotency_key")
    # No index of its own (the primary key leads with tenant_id) and no constraint: ingest
    # writes a key only with its record, whose foreign key checks the tenant; one check per
    # row is what ingest can afford.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    idempotency_key = models.CharField(max_length=64)
    # The record: (record_id, created_at) is its primary key in the partitioned table.
    # Nothing else is indexed: retention finds the keys through the records it deletes.
    record_id = models.BigIntegerField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.idempotency_key


class RunRecord(models.Model):
    """One agent/worker run as reported by the client; immutable once terminal."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    run_id = models.CharField(max_length=64)
    worker_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    success = models.BooleanField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    total_tokens = models.BigIntegerField(null=True, blank=True)
    total_latency_ms = models.BigIntegerField(null=True, blank=True)
    cost_cents = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    is_retry = models.BooleanField(default=False)
    attempt = models.IntegerField(default=1)
    parent_run_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "run_id"], name="runrecord_tenant_run_uniq"),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="runrecord_attempt_min1"),
            models.CheckConstraint(
                condition=Q(cost_cents__isnull=True) | Q(cost_cents__gte=0),
                name="runrecord_cost_nonneg",
            ),
        ]
        indexes = [
            # usage statistics (compute_units) and prediction windows
            models.Index(fields=["tenant", "created_at"], name="runrecord_tenant_time"),
            # per-worker cost spikes and failure likelihood
            models.Index(
                fields=["tenant", "worker_id", "created_at"], name="runrecord_worker_time"
            ),
            # failure patterns: failed runs in a window
            models.Index(fields=["tenant", "status", "created_at"], name="runrecord_status_time"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in RunStatus.terminal()


class FeatureTag(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    tag = models.CharField(
        max_length=128,
        validators=[RegexValidator(r"^[A-Za-z0-9._:-]+$", "Letters, digits, . _ : -")],
    )
    display_name = models.CharField(max_length=256)
    description = models.TextField(blank=True, default="")
    budget_cents = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Informational only."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tag"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "tag"], name="featuretag_tenant_tag_uniq"),
        ]

    def __str__(self) -> str:
        return self.tag


class Budget(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    budget_type = models.CharField(max_length=16, choices=BudgetType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    daily_limit_cents = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    monthly_limit_cents = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    warn_threshold_pct = models.IntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    hard_limit_enabled = models.BooleanField(
        default=False,
        help_text="Refuse reservations past the limit (soft budgets only warn).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A tenant has at most one tenant-level budget: NULL entity ids compare equal.
            models.UniqueConstraint(
                fields=["tenant", "budget_type", "entity_id"],
                nulls_distinct=False,
                name="budget_tenant_scope_uniq",
            ),
            models.CheckConstraint(
                condition=(Q(budget_type=BudgetType.TENANT) & Q(entity_id__isnull=True))
                | (~Q(budget_type=BudgetType.TENANT) & Q(entity_id__isnull=False)),
                name="budget_entity_iff_not_tenant",
            ),
            models.CheckConstraint(
                condition=Q(daily_limit_cents__isnull=False) | Q(monthly_limit_cents__isnull=False),
                name="budget_has_a_limit",
            ),
            models.CheckConstraint(
                condition=Q(warn_threshold_pct__gte=1) & Q(warn_threshold_pct__lte=100),
                name="budget_warn_pct_range",
            ),
        ]

    def __str__(self) -> str:
        scope = (
            self.budget_type if self.entity_id is None else f"{self.budget_type} {self.entity_id}"
        )
        return f"Budget for {scope}"
