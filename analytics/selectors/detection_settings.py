"""Reads of a tenant's detection settings as the API shows them."""

from dataclasses import asdict

from analytics.models import DetectionSettings, Tenant
from analytics.selectors.incidents import (
    SETTING_NAMES,
    detection_settings_defaults,
    detection_settings_effective,
)


def detection_settings_overview(*, tenant: Tenant) -> dict:
    """The effective settings, the project defaults, and which settings the tenant overrides.

    `updated_at` is None and `updated_by` empty while the tenant has never stored any.
    """
    stored = DetectionSettings.objects.filter(tenant=tenant).first()
    effective = asdict(detection_settings_effective(tenant=tenant))
    effective["monitored_dimensions"] = list(effective["monitored_dimensions"])
    return {
        **effective,
        "defaults": detection_settings_defaults(),
        "overridden": [
            name
            for name in SETTING_NAMES
            if stored is not None and getattr(stored, name) is not None
        ],
        "updated_at": stored.updated_at if stored else None,
        "updated_by": stored.updated_by if stored else "",
    }
