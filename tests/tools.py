"""External programs some tests drive: Debian's Chromium (browser tests) and promtool.

Without the program a test skips and says what to install, so a laptop without them still
runs the rest of the suite. CI installs both and sets COSTWISE_REQUIRE_TOOLS=1 (`.ci/run`):
there a missing program fails the test instead of skipping it, so a broken install cannot
turn into a green run that never drove a browser or checked the rule file.
"""

import os
import shutil

import pytest

REQUIRE_TOOLS_ENV = "COSTWISE_REQUIRE_TOOLS"


def tools_required() -> bool:
    """True when a missing program must fail the test (COSTWISE_REQUIRE_TOOLS=1)."""
    return os.environ.get(REQUIRE_TOOLS_ENV, "").strip().lower() in {"1", "true", "yes"}


def tool_path(program: str, *, install: str) -> str:
    """Return the path of `program` (a name on PATH or an absolute path).

    Without it the calling test is skipped with `install` as the hint, or fails when
    tools_required().
    """
    found = shutil.which(program)
    if found is not None:
        return found
    reason = f"{program} not found: {install}"
    if tools_required():
        pytest.fail(f"{reason} ({REQUIRE_TOOLS_ENV} is set: required, not skipped)", pytrace=False)
    pytest.skip(reason)
