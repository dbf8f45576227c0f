import json
from io import StringIO
from pathlib import Path

import pytest

from analytics.hashing import short_hash
from costsim.services.datasets import DATASETS, UnknownDataset
from costsim.services.golden import golden_document, golden_file_name, golden_text

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

STALE_HINT = (
    "{path} no longer matches the estimators. If the change is intended, bump "
    "COSTSIM_MODEL_VERSION (default: costsim.services.estimators.V2_MODEL_VERSION) and run "
    "`python manage.py write_golden_files`; otherwise the estimators changed by accident."
)


@pytest.mark.parametrize("dataset_id", list(DATASETS))
def test_golden_file_matches_the_estimators(dataset_id):
    # given
    path = GOLDEN_DIR / golden_file_name(dataset_id)

    # when
    expected = golden_text(dataset_id)

    # then
    assert path.read_text(encoding="utf-8") == expected, STALE_HINT.format(path=path)


def test_there_is_one_golden_file_per_dataset():
    # then
    assert sorted(p.name for p in GOLDEN_DIR.glob("*.json")) == sorted(
        golden_file_name(d) for d in DATASETS
    )


def test_golden_document_shape():
    # when
    document = golden_document("historical")

    # then
    assert list(document) == ["dataset_id", "model_version", "samples"]
    assert document["dataset_id"] == "historical"
    assert document["model_version"] == "2.0.0"
    sample = document["samples"][0]
    assert sample["sample_id"] == "hist_api_integration"
    assert len(sample["input_hash"]) == 16
    assert set(sample["v1"]) == {
        "status",
        "feasible",
        "estimated_cost_cents",
        "estimated_duration_ms",
    }
    assert set(sample["v2"]) == {
        "status",
        "feasible",
        "estimated_cost_cents",
        "estimated_duration_ms",
        "confidence_score",
        "output_hash",
    }
    assert set(sample["comparison"]) == {"verdict", "drift_score"}


def test_golden_input_hash_covers_plan_and_budget():
    # given
    dataset = DATASETS["noise_injected"]

    # when
    document = golden_document("noise_injected")

    # then
    for sample, golden in zip(dataset.samples, document["samples"], strict=True):
        assert golden["input_hash"] == short_hash(
            {"plan": sample.plan, "budget_cents": sample.budget_cents}
        )


def test_golden_text_is_indented_sorted_and_ends_with_a_newline():
    # when
    text = golden_text("historical")

    # then
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_golden_document_of_an_unknown_dataset_raises():
    # then
    with pytest.raises(UnknownDataset):
        golden_document("nope")


def test_write_golden_files_command_reproduces_the_checked_in_files(tmp_path):
    # given
    settings = pytest.importorskip("django.conf").settings
    if not settings.configured:
        pytest.skip("Django settings are not configured")
    from django.core.management import call_command

    out = StringIO()

    # when
    call_command("write_golden_files", output_dir=str(tmp_path), stdout=out)

    # then
    for dataset_id in DATASETS:
        name = golden_file_name(dataset_id)
        assert (tmp_path / name).read_bytes() == (GOLDEN_DIR / name).read_bytes()
        assert str(tmp_path / name) in out.getvalue()
    assert "Wrote 5 golden files" in out.getvalue()


def test_write_golden_files_command_reports_an_unwritable_directory(tmp_path):
    # given
    settings = pytest.importorskip("django.conf").settings
    if not settings.configured:
        pytest.skip("Django settings are not configured")
    from django.core.management import CommandError, call_command

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    # then
    with pytest.raises(CommandError, match="Cannot write golden files"):
        call_command("write_golden_files", output_dir=str(blocker / "golden"), stdout=StringIO())
