"""OpenAPI generation: the error body, and the error responses every operation documents.

Every non-2xx answer of the API is the body `analytics.api.errors.error_body` builds. The
schema class below adds those responses to each operation from what the operation takes,
so that a client (or a fuzzer) never meets an undocumented status code:

- 400 always (validation and parse errors; a query string with a NUL byte or too many
  parameters is refused before any view runs),
- 401 and 403 when it needs credentials (missing or bad key, staff only, tenant required,
  CSRF of a session),
- 404 when its path names an object,
- 413 and 415 when it is a write (a body over API_MAX_BODY_BYTES, or not JSON).

409 depends on the resource's state, so the few operations that answer it say so with
`extend_schema(responses={..., 409: CONFLICT})`. 5xx is never documented: it is a bug.
"""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The input at fault, e.g. `records[3].cost_cents`.")
    reason = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The body of every non-2xx response."""

    error = serializers.CharField(
        help_text="Machine-readable code: `validation_error`, `not_found`, `conflict`, ..."
    )
    message = serializers.CharField()
    field_errors = FieldErrorSerializer(many=True)


CONFLICT = OpenApiResponse(ErrorSerializer, description="The resource's state does not allow it.")

ERROR_DESCRIPTIONS = {
    "400": "Invalid input; `field_errors` names every field at fault.",
    "401": "No API key, or an invalid, revoked or inactive one.",
    "403": "The caller may not do this (staff only, a tenant key required, CSRF).",
    "404": "No such object for this tenant.",
    "413": "The request body is too large.",
    "415": "The request body is not JSON.",
}


class ErrorResponsesAutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses of each operation."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error_ref = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation.setdefault("responses", {})
        for code in self._error_status_codes(operation):
            responses.setdefault(
                code,
                {
                    "content": {"application/json": {"schema": error_ref}},
                    "description": ERROR_DESCRIPTIONS[code],
                },
            )
        return operation

    def _error_status_codes(self, operation: dict) -> list[str]:
        parameters = operation.get("parameters", [])
        # A write parses whatever body it is sent, documented or not.
        has_body = "requestBody" in operation or self.method in ("POST", "PUT", "PATCH")
        codes = ["400"]
        if any(requirement for requirement in operation.get("security", [])):
            codes += ["401", "403"]
        if any(p["in"] == "path" for p in parameters):
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        return codes
