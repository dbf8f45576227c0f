"""The errors services raise when a request cannot be carried out.

Services, selectors and engines never import the API layer. When a write is refused because
of the state it finds (a closed anomaly, a snapshot still computing), the service raises one
of the errors below with a message for people and, when one field is to blame, a field
error. The edges translate them: the API's exception handler (`analytics/api/errors.py`)
answers with the standard error body and `status_code`, the admin shows the message.

`status_code` and `code` are the answer every edge gives for the error, kept here so that
the family has one table; nothing in this module depends on Django REST framework.
"""


class DomainError(Exception):
    """A request the domain refuses; `field_errors` are `[{"field", "reason"}]`."""

    status_code = 400
    code = "bad_request"
    default_message = "The request cannot be carried out."

    def __init__(self, message: str | None = None, field_errors: list[dict] | None = None):
        self.message = message or self.default_message
        self.field_errors = list(field_errors or [])
        super().__init__(self.message)


class Conflict(DomainError):
    """The request conflicts with the current state of the object (409)."""

    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class NotFound(DomainError):
    """The object does not exist for the caller's tenant (404)."""

    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Invalid(DomainError):
    """The input is well-formed but not acceptable (400, a validation error)."""

    status_code = 400
    code = "validation_error"
    default_message = "Invalid input."
