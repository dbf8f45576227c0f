import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from analytics.datetimes import parse_aware_datetime
from analytics.models import Tenant
from costsim.services.provenance import provenance_export

PROGRESS_EVERY = 10_000


def _instant(option: str, raw: str | None) -> datetime | None:
    """An aware ISO-8601 datetime, or a date meaning 00:00 UTC of that day."""
    if raw is None:
        return None
    try:
        return parse_aware_datetime(raw, allow_date=True)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


class Command(BaseCommand):
    help = (
        "Write provenance rows as JSONL, ordered by id, every column including the input "
        "and output JSON (money as v1_cost_cents, v2_cost_cents, cost_delta_cents). "
        "--since/--until select created_at in [since, until). backfill_provenance reads "
        "the file back."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="file to write (overwritten)")
        parser.add_argument("--tenant", help="only this tenant's rows (slug)")
        parser.add_argument("--since", help="created_at >= this (ISO-8601 with offset, or date)")
        parser.add_argument("--until", help="created_at < this (ISO-8601 with offset, or date)")

    def handle(self, *args, path: str, tenant: str | None, since, until, **options):
        start = _instant("--since", since)
        end = _instant("--until", until)
        if start is not None and end is not None and start >= end:
            raise CommandError("--since must be before --until.")
        tenant_obj = None
        if tenant is not None:
            tenant_obj = Tenant.objects.filter(slug=tenant).first()
            if tenant_obj is None:
                raise CommandError(f"Unknown tenant {tenant!r}.")

        count = 0
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                for row in provenance_export(tenant=tenant_obj, start=start, end=end):
                    fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    fh.write("\n")
                    count += 1
                    if count % PROGRESS_EVERY == 0:
                        self.stdout.write(f"{count} rows written")
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Exported {count} provenance rows to {path}."))
