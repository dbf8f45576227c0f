"""How responses name who did something (acknowledged, resolved, labelled, created ...)."""

from rest_framework import serializers


class ActorField(serializers.CharField):
    """`api-key:<prefix>`, `user:<name>` or a job's name; null when nobody has.

    The models store "nobody" as an empty string (or NULL); every response says null.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value) -> str | None:
        return value or None
