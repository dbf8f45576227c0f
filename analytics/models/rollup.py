from django.db import models

from analytics.models.tenancy import Tenant


class CostRollup(models.Model):
    """The sums of one UTC hour's cost records of one (feature tag, user, model).

    Written only by the database: statement-level triggers on analytics_costrecord add each
    inserted statement's records and move updated ones (reprice) from their old sums to their
    new ones (migration 0010_cost_rollup). Deleting records subtracts nothing: like
    snapshots, rollups keep the sums of records that retention removed. The statistics and
    budget spend reads add whole hours from here instead of scanning their records.
    """

    # No index of its own: costrollup_key leads with tenant_id. No constraint either, which
    # would check the tenant of every new row the triggers write; a trigger on the tenant
    # table deletes a deleted tenant's rollups instead, even when deleted in plain SQL.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    hour = models.DateTimeField()
    feature_tag = models.CharField(max_length=128, null=True, blank=True)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    model = models.CharField(max_length=64)
    # 0 once every record of the key moved to another key (a changed created_at or tag);
    # reads skip such rows.
    requests = models.BigIntegerField()
    # Exact sums, as wide as a snapshot aggregate's: no accepted record can overflow them.
    spend_cents = models.DecimalField(max_digits=38, decimal_places=6)
    input_tokens = models.DecimalField(max_digits=38, decimal_places=0)
    output_tokens = models.DecimalField(max_digits=38, decimal_places=0)
    # Records without a cost (unpriced), which spend_cents leaves out.
    unpriced_records = models.BigIntegerField()

    class Meta:
        constraints = [
            # The triggers' ON CONFLICT target; also the reads' (tenant, hour) range scan.
            models.UniqueConstraint(
                fields=["tenant", "hour", "feature_tag", "user_id", "model"],
                nulls_distinct=False,
                name="costrollup_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.feature_tag or 'untagged'} at {self.hour:%Y-%m-%d %H:00}"
