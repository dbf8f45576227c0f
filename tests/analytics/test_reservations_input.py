"""The reserve body's fast reading agrees with ReserveInputSerializer on every body."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from analytics.api.reservation_serializers import ReserveInputSerializer, reserve_input
from analytics.api.views import validated


def _answer(read, body):
    try:
        return "ok", dict(read(body))
    except ValidationError as exc:
        return "refused", exc.detail


def _serializer(body):
    return validated(ReserveInputSerializer, body)


@pytest.mark.parametrize(
    "body",
    [
        {"amount_cents": 25, "request_id": "call-1"},
        {"amount_cents": 25, "request_id": "call-1", "ttl_seconds": 60, "plan": None},
        {"amount_cents": 0, "run_id": "run-1", "feature_tag": "chat", "user_id": None},
        {"amount_cents": 25, "request_id": " call-1 "},
        {"amount_cents": 25, "request_id": ""},
        {"amount_cents": 25, "request_id": "x" * 65},
        {"amount_cents": 25, "request_id": "caf\u00e9"},
        {"amount_cents": 25, "request_id": "a\x00b"},
        {"amount_cents": True, "request_id": "call-1"},
        {"amount_cents": 25.0, "request_id": "call-1"},
        {"amount_cents": "25", "request_id": "call-1"},
        {"amount_cents": -1, "request_id": "call-1"},
        {"amount_cents": 10**13, "request_id": "call-1"},
        {"amount_cents": 25, "request_id": "call-1", "ttl_seconds": 0},
        {"amount_cents": 25, "request_id": "call-1", "ttl_seconds": None},
        {"amount_cents": 25, "request_id": 7},
        {"amount_cents": 25},
        {"request_id": "call-1"},
        {"amount_cents": 25, "plan": [{"skill": "kv_get"}], "request_id": "call-1"},
        {"amount_cents": 25, "request_id": "call-1", "extra": 1},
        [],
        "text",
        None,
    ],
)
def test_fast_reading_answers_as_the_serializer(body):
    # given a reserve body, plain or not

    # when both read it
    fast, slow = _answer(reserve_input, body), _answer(_serializer, body)

    # then they accept the same data or refuse with the same errors
    assert fast == slow


_text = st.one_of(
    st.none(),
    st.text(max_size=70),
    st.text(alphabet="ab- \t", max_size=6),
    st.integers(),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(sorted(ReserveInputSerializer._declared_fields)),
        st.one_of(
            _text,
            st.integers(min_value=-2, max_value=2 * 10**12),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
    )
)
def test_fast_reading_agrees_on_arbitrary_bodies(body):
    assert _answer(reserve_input, body) == _answer(_serializer, body)
