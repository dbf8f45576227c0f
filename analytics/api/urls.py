"""Routes of this app: viewsets go on the shared router, other views are returned as paths.

Each API module of the app owns its routes through a `register(router) -> list[path]`
function; this module only lists them.
"""

from analytics.api import (
    anomalies,
    detection_settings,
    incidents,
    model_prices,
    reservations,
    snapshots,
    statistics,
    views,
)

MODULES = (
    views,
    statistics,
    snapshots,
    anomalies,
    incidents,
    detection_settings,
    reservations,
    model_prices,
)


def register(router) -> list:
    extra_urls: list = []
    for module in MODULES:
        extra_urls += module.register(router)
    return extra_urls
