"""Routes of the CostSim safety net; plain views, returned as paths."""

from django.urls import path

from costsim.api import safety


def register(router) -> list:
    return [
        path("costsim/incidents/", safety.IncidentListView.as_view(), name="costsim-incidents"),
        path(
            "costsim/breaker/disable/",
            safety.BreakerDisableView.as_view(),
            name="costsim-breaker-disable",
        ),
        path(
            "costsim/breaker/enable/",
            safety.BreakerEnableView.as_view(),
            name="costsim-breaker-enable",
        ),
        path("costsim/canary/run/", safety.CanaryRunView.as_view(), name="costsim-canary-run"),
        path(
            "costsim/canary/reports/",
            safety.CanaryReportListView.as_view(),
            name="costsim-canary-reports",
        ),
        path("costsim/datasets/", safety.DatasetListView.as_view(), name="costsim-datasets"),
        # Before the detail route, which would otherwise take "validate-all" for an id.
        path(
            "costsim/datasets/validate-all/",
            safety.DatasetValidateAllView.as_view(),
            name="costsim-datasets-validate-all",
        ),
        path(
            "costsim/datasets/<str:dataset_id>/",
            safety.DatasetDetailView.as_view(),
            name="costsim-dataset-detail",
        ),
        path(
            "costsim/datasets/<str:dataset_id>/validate/",
            safety.DatasetValidateView.as_view(),
            name="costsim-dataset-validate",
        ),
        path(
            "costsim/alert-rules.yaml",
            safety.AlertRulesView.as_view(),
            name="costsim-alert-rules",
        ),
        path("costsim/divergence/", safety.DivergenceView.as_view(), name="costsim-divergence"),
        path("costsim/calibration/", safety.CalibrationView.as_view(), name="costsim-calibration"),
    ]
