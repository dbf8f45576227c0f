"""CostSim routes: simulation/provenance and the safety net are registered separately."""

from costsim.api import safety_urls, simulation_urls


def register(router) -> list:
    return [*simulation_urls.register(router), *safety_urls.register(router)]
