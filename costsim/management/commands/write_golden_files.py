from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from costsim.services.datasets import DATASETS
from costsim.services.estimators import V2_MODEL_VERSION
from costsim.services.golden import golden_file_name, golden_text


class Command(BaseCommand):
    help = (
        "Write one golden JSON file per reference dataset (V1 and V2 summaries of every "
        "sample). Run after an intended estimator change and a COSTSIM_MODEL_VERSION bump."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output-dir",
            help="Directory to write <dataset_id>.json into (default: tests/golden).",
        )

    def handle(self, *args, **options):
        if options["output_dir"]:
            output_dir = Path(options["output_dir"])
        else:
            # Relative to the project, not to wherever the command is started from.
            output_dir = Path(getattr(settings, "BASE_DIR", Path.cwd())) / "tests" / "golden"
        model_version = getattr(settings, "COSTSIM_MODEL_VERSION", V2_MODEL_VERSION)

        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            for dataset_id in DATASETS:
                path = output_dir / golden_file_name(dataset_id)
                # newline="\n" keeps the files byte-identical on every platform.
                with path.open("w", encoding="utf-8", newline="\n") as fh:
                    fh.write(golden_text(dataset_id, model_version=model_version))
                self.stdout.write(f"Wrote {path}")
        except OSError as exc:
            raise CommandError(f"Cannot write golden files to {output_dir}: {exc}") from exc

        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {len(DATASETS)} golden files (model version {model_version})."
            )
        )
