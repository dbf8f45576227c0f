"""Services raise the errors of analytics/errors.py; the API answers them in the standard body."""

import pytest

from analytics.api.errors import exception_handler
from analytics.errors import Conflict, DomainError, Invalid, NotFound


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Conflict("Cannot resolve an anomaly that is dismissed."), 409, "conflict"),
        (NotFound("No such snapshot."), 404, "not_found"),
        (Invalid("threshold_pct must be positive."), 400, "validation_error"),
    ],
)
def test_the_api_answers_a_domain_error_with_its_status_and_the_standard_body(error, status, code):
    error.field_errors.append({"field": "status", "reason": "why"})

    response = exception_handler(error, {})

    assert response.status_code == status
    assert response.data == {
        "error": code,
        "message": str(error),
        "field_errors": [{"field": "status", "reason": "why"}],
    }


def test_a_domain_error_without_a_message_uses_its_default():
    error = Conflict()

    assert error.message == "The request conflicts with the current state."
    assert error.field_errors == []
    assert isinstance(error, DomainError)
    assert exception_handler(error, {}).data["message"] == error.message


def test_domain_errors_do_not_depend_on_the_api_layer():
    # The admin and tasks catch these without DRF's exception hierarchy.
    from rest_framework.exceptions import APIException

    assert not issubclass(DomainError, APIException)
