"""Admin pages for this area (registered on import)."""
