"""The shipped alert rules: one source, valid for promtool, and every
series they read is really exposed on /metrics."""

import subprocess
from io import StringIO

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from analytics.models import ApiKey
from costsim.services.alert_rules import alert_rule_metrics, alert_rules, alert_rules_bytes
from costsim.services.canary import canary_run
from costsim.services.sandbox import simulate
from tests.conftest import key_client
from tests.factories import ApiKeyFactory, TenantFactory
from tests.tools import tool_path

RULE_NAMES = [
    "CostSimV2HighDrift",
    "CostSimV2DriftWarning",
    "CostSimV2SchemaErrors",
    "CostSimV2CircuitBreakerOpen",
    "CostSimV2CanaryFailure",
    "CostSimV2HighKLDivergence",
    "CostSimAlertQueueBacklog",
    "CostSimAlertSendFailures",
    "CostSimRapidCBTrips",
    "CostSimHighConsecutiveFailures",
]
PROMTOOL_INSTALL = (
    "install Debian's `prometheus` package "
    "(apt-get install --no-install-recommends prometheus) to check the rule file"
)


@pytest.mark.django_db
def test_endpoint_serves_the_rule_file_byte_for_byte(api_client):
    # when
    response = api_client.get("/api/v1/costsim/alert-rules.yaml")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml"
    assert response.content == alert_rules_bytes()
    assert response.content.startswith(b"groups:\n  - name: costsim_v2_alerts\n")
    assert response.content.endswith(b"consecutive drift failures.\n")


@pytest.mark.django_db
def test_endpoint_needs_authentication(client):
    # when
    response = client.get("/api/v1/costsim/alert-rules.yaml")
    # then
    assert response.status_code == 401


@pytest.mark.django_db
def test_command_writes_what_the_endpoint_serves(api_client, tmp_path):
    # given
    target = tmp_path / "costsim.rules.yaml"
    out = StringIO()
    # when
    call_command("write_alert_rules", str(target), stdout=out)
    # then
    assert target.read_bytes() == api_client.get("/api/v1/costsim/alert-rules.yaml").content
    assert "Wrote 10 alert rules" in out.getvalue()


def test_the_ten_rules_of_the_spec():
    # then
    rules = alert_rules()
    assert [rule["alert"] for rule in rules] == RULE_NAMES
    assert {rule["labels"]["component"] for rule in rules} == {"costsim"}
    assert [rule["labels"]["priority"] for rule in rules] == [
        "P1",
        "P2",
        "P3",
        "P1",
        "P2",
        "P2",
        "P2",
        "P2",
        "P1",
        "P2",
    ]


def test_promtool_accepts_the_written_file(tmp_path):
    # given
    promtool = tool_path("promtool", install=PROMTOOL_INSTALL)
    target = tmp_path / "rules.yaml"
    call_command("write_alert_rules", str(target), stdout=StringIO())
    # when
    result = subprocess.run(
        [promtool, "check", "rules", str(target)], capture_output=True, text=True, timeout=60
    )
    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout + result.stderr


def test_rule_expressions_reference_these_series():
    # then
    assert alert_rule_metrics() == {
        "costsim_v2_drift_score_bucket",
        "costsim_v2_schema_errors_total",
        "costsim_v2_circuit_breaker_state",
        "costsim_v2_canary_runs_total",
        "costsim_v2_kl_divergence",
        "costsim_cb_alert_queue_depth",
        "notifications_delivery_errors_total",
        "costsim_cb_disabled_total",
        "costsim_cb_consecutive_failures",
    }


@pytest.mark.django_db
def test_every_series_a_rule_reads_is_on_metrics_after_a_simulation(client, settings):
    # given a tenant of its own, so the tenant-labelled series below are this test's
    settings.COSTSIM_V2_SANDBOX = True
    # the canary judges (and sets the KL gauge) on the one comparison this test makes
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 1
    probe = TenantFactory(slug="alert-rules-probe")
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=probe, raw_key=raw)
    plan = [{"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}}]

    # when one shadow simulation runs through the API, one V2 schema error happens (an
    # empty plan, which only the service accepts) and the canary persists a report
    response = key_client(raw).post(
        "/api/v1/costsim/simulate/", {"plan": plan, "budget_cents": 100}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["v2"] is not None
    simulate(tenant=probe, plan=[], budget_cents=100, allowed_skills=None, run_id=None)
    canary_run(sample_count=10, drift_threshold=0.2)
    exposition = client.get("/metrics").content.decode()

    # then every referenced series has samples, the tenant-labelled ones for this tenant
    samples: dict[str, list[dict]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    for name in sorted(alert_rule_metrics()):
        assert name in samples, f"{name} is not exposed on /metrics"
        if any("tenant" in labels for labels in samples[name]):
            tenants = {labels.get("tenant") for labels in samples[name]}
            assert "alert-rules-probe" in tenants, f"{name} has no sample for this simulation"
