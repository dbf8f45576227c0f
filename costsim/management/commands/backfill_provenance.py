import time

from django.core.management.base import BaseCommand, CommandError

from costsim.services.provenance import BackfillResult, provenance_backfill

MAX_BATCH_SIZE = 10_000
# Seconds between progress lines, so a large import neither floods nor goes silent.
PROGRESS_INTERVAL = 2.0


class Command(BaseCommand):
    help = (
        "Import V1 baseline provenance from a JSONL file, one "
        '{"tenant", "cost", "run_id"?, "input"?, "input_hash"?} object per line, or restore '
        "rows written by export_provenance (lines with variant_slug) as they were. A baseline "
        "whose (tenant, input_hash) already exists, or an exported row whose (tenant, "
        "input_hash, created_at) does, in the database or earlier in the file, is skipped; "
        "bad lines are reported with their numbers and make the command exit 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="JSONL file to import")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help=f"lines per duplicate query and bulk insert (1..{MAX_BATCH_SIZE}, default 100)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="write nothing; report the same counts"
        )

    def handle(self, *args, path: str, batch_size: int, dry_run: bool, **options):
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        self._last_progress = 0.0
        try:
            # Binary lines: a line that is not UTF-8 is then reported like any bad JSON
            # instead of aborting the whole import at the first undecodable byte.
            with open(path, "rb") as fh:
                result = provenance_backfill(
                    lines=fh, batch_size=batch_size, dry_run=dry_run, progress=self._progress
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc

        for line_no, message in result.errors:
            self.stdout.write(self.style.ERROR(f"line {line_no}: {message}"))
        inserted = "would insert" if dry_run else "inserted"
        summary = (
            f"{inserted} {result.inserted}, skipped {result.skipped}, "
            f"errors {len(result.errors)} ({result.lines} lines read)"
        )
        if result.errors:
            raise CommandError(f"Backfill finished with errors: {summary}", returncode=1)
        prefix = "Dry run: " if dry_run else "Backfill complete: "
        self.stdout.write(self.style.SUCCESS(prefix + summary))

    def _progress(self, result: BackfillResult) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self.stdout.write(
            f"{result.lines} lines: inserted {result.inserted}, skipped {result.skipped}, "
            f"errors {len(result.errors)}"
        )
