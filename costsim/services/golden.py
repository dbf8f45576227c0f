"""Golden files: V1 and V2 summaries of every reference dataset sample.

The files under ``tests/golden/`` pin the estimators' output. A test recomputes them and
requires exact text equality; an intended change to a coefficient comes with a new
``COSTSIM_MODEL_VERSION`` and regenerated files (``python manage.py write_golden_files``).
"""

import json
from typing import Any

from analytics.hashing import short_hash
from costsim.services.datasets import dataset_get
from costsim.services.drift import compare
from costsim.services.estimators import V2_MODEL_VERSION, estimate_v1, estimate_v2


def golden_document(dataset_id: str, *, model_version: str = V2_MODEL_VERSION) -> dict[str, Any]:
    """Return the golden document of a dataset; raise UnknownDataset for an unknown id.

    Only deterministic fields are kept (no runtime, no timestamps), so the document is a
    function of the dataset, the estimators and ``model_version`` alone.
    """
    dataset = dataset_get(dataset_id)
    samples = []
    for sample in dataset.samples:
        v1 = estimate_v1(sample.plan, budget_cents=sample.budget_cents)
        v2 = estimate_v2(sample.plan, budget_cents=sample.budget_cents, model_version=model_version)
        comparison = compare(v1, v2)
        samples.append(
            {
                "sample_id": sample.id,
                "input_hash": short_hash(
                    {"plan": sample.plan, "budget_cents": sample.budget_cents}
                ),
                "v1": {
                    "status": v1.status,
                    "feasible": v1.feasible,
                    "estimated_cost_cents": v1.estimated_cost_cents,
                    "estimated_duration_ms": v1.estimated_duration_ms,
                },
                "v2": {
                    "status": v2.status,
                    "feasible": v2.feasible,
                    "estimated_cost_cents": v2.estimated_cost_cents,
                    "estimated_duration_ms": v2.estimated_duration_ms,
                    "confidence_score": v2.confidence_score,
                    "output_hash": v2.output_hash,
                },
                "comparison": {
                    "verdict": comparison.verdict,
                    "drift_score": comparison.drift_score,
                },
            }
        )
    return {"dataset_id": dataset.id, "model_version": model_version, "samples": samples}


def golden_file_name(dataset_id: str) -> str:
    return f"{dataset_id}.json"


def golden_text(dataset_id: str, *, model_version: str = V2_MODEL_VERSION) -> str:
    """Return the exact file content: 2-space indent, sorted keys, trailing newline."""
    document = golden_document(dataset_id, model_version=model_version)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
