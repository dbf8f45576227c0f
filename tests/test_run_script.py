"""scripts/run.py: the summary `make run` ends with, and what it reads from the set-up steps.

The launcher itself (processes, signals) is exercised by running `make run`; these are the
pure parts.
"""

import runpy

import pytest
from django.conf import settings

run = runpy.run_path(str(settings.BASE_DIR / "scripts" / "run.py"))

SEED_OUTPUT = [
    "Demo tenant demo: 10 of 10 cost records new, 2 runs new.",
    "Demo data ready; open /admin/ to see it.",
    "API key of the demo tenant (shown once):",
    "ck_first-run-key",
]


def _summary(**overrides) -> str:
    arguments = {
        "base_url": "http://127.0.0.1:8765/",
        "elapsed": 4.3,
        "api_key": None,
        "seeded": True,
        "login": None,
        "manage": ".venv/bin/python manage.py",
    } | overrides
    return run["summary"](**arguments)


def test_first_run_repeats_the_key_and_the_login_under_the_urls():
    # when
    text = _summary(api_key="ck_first-run-key", login="admin / s3cret")
    # then
    lines = text.strip().splitlines()
    assert lines[0] == "== costwise is up (4.3s); Ctrl-C stops it"
    assert len(lines) == 7
    assert "http://127.0.0.1:8765/api/v1/" in lines[1]
    assert "http://127.0.0.1:8765/api/docs/" in lines[2]
    assert lines[3].endswith("http://127.0.0.1:8765/admin/")
    assert lines[4].endswith("admin / s3cret")
    assert "ck_first-run-key" in lines[5] and "first run" in lines[5]
    assert lines[6].endswith("http://127.0.0.1:8765/metrics")


def test_later_runs_name_the_commands_for_a_new_key_and_password():
    # when
    text = _summary()
    # then
    assert ".venv/bin/python manage.py create_api_key demo" in text
    assert ".venv/bin/python manage.py changepassword admin" in text
    assert "ck_" not in text


def test_without_the_demo_tenant_it_points_to_create_tenant():
    # when
    text = _summary(seeded=False)
    # then
    assert "manage.py create_tenant <slug>" in text


def test_the_key_and_login_are_read_from_what_the_steps_printed():
    # then
    assert run["demo_key_from"](SEED_OUTPUT) == "ck_first-run-key"
    assert run["demo_key_from"](SEED_OUTPUT[:2]) is None
    assert run["operator_login_from"](["Admin login: admin / s3cret"]) == "admin / s3cret"
    assert run["operator_login_from"](["Operator 'admin' exists; reset its password ..."]) is None


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000/"),
        ("localhost:8765", "http://localhost:8765/"),
    ],
)
def test_base_url_is_what_a_local_browser_opens(bind, url):
    assert run["base_url"](bind) == url
