"""The skip-or-fail rule for tests that need an external program (tests/tools.py)."""

import pytest

from tests.tools import REQUIRE_TOOLS_ENV, tool_path

MISSING = "/nonexistent/costwise-no-such-program"


def test_a_missing_program_skips_with_the_install_hint(monkeypatch):
    # given
    monkeypatch.delenv(REQUIRE_TOOLS_ENV, raising=False)
    # when
    with pytest.raises(pytest.skip.Exception) as excinfo:
        tool_path(MISSING, install="apt-get install it")
    # then
    assert str(excinfo.value) == f"{MISSING} not found: apt-get install it"


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_a_missing_program_fails_when_tools_are_required(monkeypatch, value):
    # given
    monkeypatch.setenv(REQUIRE_TOOLS_ENV, value)
    # when
    with pytest.raises(pytest.fail.Exception) as excinfo:
        tool_path(MISSING, install="apt-get install it")
    # then
    assert "apt-get install it" in str(excinfo.value)
    assert REQUIRE_TOOLS_ENV in str(excinfo.value)


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_other_values_do_not_require_tools(monkeypatch, value):
    # given
    monkeypatch.setenv(REQUIRE_TOOLS_ENV, value)
    # then
    with pytest.raises(pytest.skip.Exception):
        tool_path(MISSING, install="apt-get install it")


def test_a_present_program_is_returned_by_path(monkeypatch):
    # given
    monkeypatch.setenv(REQUIRE_TOOLS_ENV, "1")
    # then
    assert tool_path("sh", install="it is always there").endswith("/sh")
