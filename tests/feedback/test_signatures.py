"""Error signatures. Pure: no database."""

import pytest

from feedback.services.signatures import EMPTY_SIGNATURE, error_signature, normalise_error

TIMEOUT = (
    "Timeout after 30s calling job 3F2504E0-4F89-11D3-9A0C-0305E82C3301 at 2026-03-02T10:15:00"
)
HTTP = "HTTP 503 from upstream (attempt 2)"


def test_spec_example_timeout_masks_uuid_and_timestamp_but_not_30s():
    assert normalise_error(TIMEOUT) == "timeout after 30s calling job <uuid> at <timestamp>"
    assert error_signature(TIMEOUT) == "6e7320b81f76e5bd"


def test_spec_example_http_masks_standalone_integers():
    assert normalise_error(HTTP) == "http <n> from upstream (attempt <n>)"
    assert error_signature(HTTP) == "f7da4002d70dd952"


@pytest.mark.parametrize("blank", ["   ", "", "\t\n", "\x1c \x1f"])
def test_blank_error_is_empty_error(blank):
    assert error_signature(blank) == EMPTY_SIGNATURE == "empty_error"


def test_variable_parts_share_one_signature():
    # given: same failure, different job id, time and attempt, different case and padding
    first = (
        "Timeout after 30s calling job 3F2504E0-4F89-11D3-9A0C-0305E82C3301 at 2026-03-02T10:15:00"
    )
    second = (
        "  timeout AFTER 30s calling job 00000000-aaaa-bbbb-cccc-0123456789ab"
        " at 2027-01-31 23:59:59\n"
    )
    # then
    assert error_signature(first) == error_signature(second)


def test_replacements_run_in_order_so_uuid_digits_are_not_counted_as_integers():
    # A UUID whose groups are all digits would otherwise become <n>-<n>-...
    text = "job 12345678-1234-1234-1234-123456789012 failed"
    assert normalise_error(text) == "job <uuid> failed"


def test_timestamp_digits_are_masked_before_integers():
    assert normalise_error("at 2026-03-02 10:15:00 retry 3") == "at <timestamp> retry <n>"


@pytest.mark.parametrize(
    ("error", "normalised"),
    [
        ("abc123 def", "abc123 def"),  # digits glued to letters are not standalone
        ("code_42 x", "code_42 x"),  # underscore is a word character
        ("42", "<n>"),
        ("port:8080/x", "port:<n>/x"),
        ("v1.2.3", "v1.<n>.<n>"),
        ("-7 and 007", "-<n> and <n>"),
    ],
)
def test_standalone_integer_boundaries(error, normalised):
    assert normalise_error(error) == normalised


def test_different_errors_have_different_signatures():
    assert error_signature("connection refused") != error_signature("connection reset")


def test_signature_is_sixteen_lowercase_hex():
    signature = error_signature(HTTP)
    assert len(signature) == 16
    assert signature == signature.lower()
    int(signature, 16)
