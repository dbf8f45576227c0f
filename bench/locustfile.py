"""A realistic request mix for costwise, for locust; point it at any deployment.

    COSTWISE_API_KEY=... locust -f bench/locustfile.py --host https://costwise.example.com

Each simulated client is one agent team's integration using one tenant's API key
(`Authorization: Api-Key $COSTWISE_API_KEY`; with several comma-separated keys, one per tenant,
the clients are spread evenly over them). Per task, by weight:

- ingest (8): a batch of 10-60 cost records; about half carry the client's cost
  (`cost_cents`), the rest only tokens, which the server prices from its catalogue. One batch
  in twenty is sent a second time, as a client retrying after a timeout does; its records
  carry idempotency keys, so the re-send must create nothing (checked: `accepted` 0, every
  record a duplicate; a first send must accept every record).
- statistics (5): cost and usage statistics, 30 days by day or 2 days by hour.
- anomaly and incident reads (3): first pages of the anomaly and incident lists.
- simulate (4): `POST /api/v1/costsim/simulate/` with a plan, as agents do before a run.
- reserve + release (2): a budget reservation, released when the run is abandoned (every
  other one); the rest lapse at their TTL or settle.

Any answer outside the documented ones is a failure (a reserve refused by a hard budget is a
documented 200, not a failure). Plans come from the file named by COSTWISE_LOAD_PLANS (a JSON
list of simulate bodies; bench/load.py writes one from the costsim reference datasets), or
from a few built-in plans. With COSTWISE_LOAD_LOG set, every request is appended to that file
as one JSON line (name, start time, milliseconds, success), which bench/load.py reads to
report each minute.
"""

import itertools
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from locust import FastHttpUser, between, events, task

# One key, or several separated by commas (one per tenant): client n uses key n mod count.
API_KEYS = [key.strip() for key in os.environ.get("COSTWISE_API_KEY", "").split(",") if key.strip()]
_clients = itertools.count()
MODELS = [
    # (model, provider, cents per 1000 input tokens, per 1000 output tokens, weight)
    ("gpt-4o", "openai", 0.25, 1.0, 30),
    ("gpt-4o-mini", "openai", 0.015, 0.06, 35),
    ("claude-3-5-sonnet", "anthropic", 0.3, 1.5, 15),
    ("claude-3-5-haiku", "anthropic", 0.08, 0.4, 10),
    ("gemini-1.5-pro", "google", 0.125, 0.5, 6),
    ("llama-3.1-70b", "together", 0.088, 0.088, 4),
]
MODEL_WEIGHTS = [m[4] for m in MODELS]
FEATURES = ["chat", "search", "summarize", "extract", "experimental", None]
FEATURE_WEIGHTS = [40, 20, 15, 10, 3, 12]
BUILTIN_PLANS = [
    {"plan": [{"skill": "http_call", "params": {"url": "https://api.example.com"}}]},
    {
        "plan": [
            {"skill": "http_call", "params": {"url": "https://api.example.com/a"}},
            {"skill": "http_call", "params": {"url": "https://api.example.com/b"}},
        ],
        "budget_cents": 100,
    },
]


def _load_plans() -> list[dict]:
    path = os.environ.get("COSTWISE_LOAD_PLANS")
    if not path:
        return BUILTIN_PLANS
    with open(path) as handle:
        return json.load(handle) or BUILTIN_PLANS


PLANS = _load_plans()
_log_path = os.environ.get("COSTWISE_LOAD_LOG")
_log = open(_log_path, "a", buffering=1) if _log_path else None  # noqa: SIM115 - process-wide


@events.request.add_listener
def _record(request_type, name, response_time, exception, start_time=None, **_kwargs):
    if _log is not None:
        started = start_time if start_time is not None else time.time() - response_time / 1000
        _log.write(
            json.dumps(
                {
                    "n": f"{request_type} {name}",
                    "t": started,
                    "ms": response_time,
                    "ok": not exception,
                }
            )
            + "\n"
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class AgentTeam(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        if not API_KEYS:
            raise SystemExit(
                "set COSTWISE_API_KEY to a tenant's API key (or several, comma-separated)"
            )
        key = API_KEYS[next(_clients) % len(API_KEYS)]
        self.headers = {"Authorization": f"Api-Key {key}", "Accept": "application/json"}
        self.client_id = uuid.uuid4().hex[:12]
        self.serial = 0
        self.users = [f"user-{n:03d}" for n in range(50)]

    def _post(self, path: str, body: dict, name: str, ok=(200, 201)) -> dict | None:
        with self.client.post(
            path, json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code not in ok:
                response.failure(f"{response.status_code}: {(response.text or '')[:300]}")
                return None
            return response.json()

    def _get(self, path: str, params: dict, name: str) -> None:
        with self.client.get(
            path, params=params, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {(response.text or '')[:300]}")

    def _record(self, now: datetime) -> dict:
        self.serial += 1
        model, provider, price_in, price_out, _ = random.choices(MODELS, weights=MODEL_WEIGHTS)[0]
        input_tokens = int(random.lognormvariate(6.5, 1.0))
        output_tokens = int(random.lognormvariate(5.0, 0.9))
        record = {
            "idempotency_key": f"load-{self.client_id}-{self.serial}",
            "user_id": random.choice(self.users),
            "feature_tag": random.choices(FEATURES, weights=FEATURE_WEIGHTS)[0],
            "request_id": f"req-{self.client_id}-{self.serial}",
            "model": model,
            "provider": provider,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "is_retry": random.random() < 0.03,
            "created_at": _iso(now - timedelta(seconds=random.uniform(0, 120))),
        }
        if random.random() < 0.5:
            # The client's own cost; the others are tokens only and priced by the server.
            cost = (input_tokens * price_in + output_tokens * price_out) / 1000
            record["cost_cents"] = round(cost, 6)
        if random.random() < 0.3:
            record["workflow_id"] = f"wf-{self.client_id}-{self.serial // 5}"
        return record

    @task(8)
    def ingest(self) -> None:
        now = datetime.now(UTC)
        body = {"records": [self._record(now) for _ in range(random.randint(10, 60))]}
        size = len(body["records"])
        self._ingest(body, "ingest batch", accepted=size, duplicates=0)
        if random.random() < 0.05:
            self._ingest(body, "ingest batch (re-sent)", accepted=0, duplicates=size)

    def _ingest(self, body: dict, name: str, accepted: int, duplicates: int) -> None:
        """Every new key is written once; a re-sent batch writes nothing."""
        with self.client.post(
            "/api/v1/cost-records/", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {(response.text or '')[:300]}")
                return
            result = response.json()
            if (result["accepted"], result["duplicates"]) != (accepted, duplicates):
                response.failure(
                    f"accepted {result['accepted']}, duplicates {result['duplicates']}; "
                    f"expected {accepted}, {duplicates}"
                )

    @task(3)
    def cost_statistics(self) -> None:
        now = datetime.now(UTC)
        if random.random() < 0.7:
            params = {"from": _iso(now - timedelta(days=30)), "to": _iso(now), "resolution": "day"}
            self._get("/api/v1/analytics/cost/", params, "cost statistics 30d/day")
        else:
            params = {"from": _iso(now - timedelta(days=2)), "to": _iso(now), "resolution": "hour"}
            self._get("/api/v1/analytics/cost/", params, "cost statistics 2d/hour")

    @task(2)
    def usage_statistics(self) -> None:
        now = datetime.now(UTC)
        params = {"from": _iso(now - timedelta(days=30)), "to": _iso(now), "resolution": "day"}
        self._get("/api/v1/analytics/usage/", params, "usage statistics 30d/day")

    @task(2)
    def anomalies(self) -> None:
        params = {"page_size": 50}
        if random.random() < 0.5:
            params["status"] = "open"
        self._get("/api/v1/anomalies/", params, "anomalies list")

    @task(1)
    def incidents(self) -> None:
        self._get("/api/v1/incidents/", {"page_size": 50}, "incidents list")

    @task(4)
    def simulate(self) -> None:
        self._post("/api/v1/costsim/simulate/", random.choice(PLANS), "simulate")

    @task(2)
    def reserve_and_release(self) -> None:
        self.serial += 1
        body = {
            "amount_cents": random.randint(1, 50),
            "feature_tag": random.choice(["chat", "search", "summarize", "extract"]),
            "user_id": random.choice(self.users),
            "run_id": f"run-{self.client_id}-{self.serial}",
            "ttl_seconds": 300,
        }
        result = self._post("/api/v1/budgets/reserve/", body, "budget reserve")
        if result and result.get("reservation_id") and random.random() < 0.5:
            self._post(
                f"/api/v1/budgets/reservations/{result['reservation_id']}/release/",
                {},
                "budget reservation release",
            )


if __name__ == "__main__":
    # `make bench` runs every bench/*.py; this one is read by locust, not run.
    print("a locust file: `locust -f bench/locustfile.py --host URL`, or bench/load.py")
