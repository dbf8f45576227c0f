"""Routes of the simulation, status and provenance endpoints."""

from django.urls import path

from costsim.api.simulation import (
    ProvenanceViewSet,
    SimulateV1View,
    SimulateV2View,
    SimulateView,
    SimulationStatusView,
)


def register(router) -> list:
    router.register("costsim/provenance", ProvenanceViewSet, basename="costsim-provenance")
    return [
        path("costsim/simulate/", SimulateView.as_view(), name="costsim-simulate"),
        path("costsim/v1/simulate/", SimulateV1View.as_view(), name="costsim-simulate-v1"),
        path("costsim/v2/simulate/", SimulateV2View.as_view(), name="costsim-simulate-v2"),
        path("costsim/status/", SimulationStatusView.as_view(), name="costsim-status"),
    ]
