"""Locust users and shapes for ScaleMart: normal traffic, the stampede, and a step shape.

The scenario is picked with SCALEMART_SCENARIO (normal | stampede | step); `loadtests/run.py`
sets it, prepares the products and checks the results. Gates come from the thresholds file
(`alert_rules/thresholds.yml`, section `loadtest`) and are applied when Locust quits.
"""

from __future__ import annotations

import json
import os
import random
import uuid

from locust import HttpUser, LoadTestShape, between, events, task
from locust.exception import StopUser

from loadtests.gates import gate_failures

SCENARIO = os.environ.get("SCALEMART_SCENARIO", "normal")
PRODUCTS = [p for p in os.environ.get("SCALEMART_PRODUCTS", "").split(",") if p]
STAMPEDE_PRODUCT = os.environ.get("SCALEMART_STAMPEDE_PRODUCT", "")
ADMIN_TOKEN = os.environ.get("SCALEMART_ADMIN_TOKEN", "")
P95_GATE_MS = float(os.environ.get("SCALEMART_GATE_P95_MS", "100"))
ERROR_GATE = float(os.environ.get("SCALEMART_GATE_ERROR_RATIO", "0.01"))

# Answers that are expected outcomes of a flash sale, not errors.
EXPECTED_REFUSALS = {409}


def _popular_product() -> str:
    # Zipf-like popularity: the first products get most of the traffic, as in a real sale.
    weights = [1.0 / (i + 1) for i in range(len(PRODUCTS))]
    return random.choices(PRODUCTS, weights=weights, k=1)[0]


def _buy(user: HttpUser, user_id: str, product: str) -> None:
    body = {"user_id": user_id, "product_id": product, "quantity": 1, "idempotency_key": uuid.uuid4().hex}
    with user.client.post("/api/buy", json=body, name="/api/buy", catch_response=True) as resp:
        if resp.status_code in (200, 201):
            resp.success()
        elif resp.status_code in EXPECTED_REFUSALS:
            resp.success()
        else:
            resp.failure(f"buy answered {resp.status_code}: {resp.text[:200]}")


class Shopper(HttpUser):
    """Normal behaviour: browse 30 %, buy 50 %, own orders 10 %, admin stats 10 %."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.user_id = f"load-{uuid.uuid4().hex[:12]}"

    @task(30)
    def view_products(self) -> None:
        if random.random() < 0.5:
            self.client.get("/api/products", name="/api/products")
        else:
            self.client.get(f"/api/products/{_popular_product()}", name="/api/products/{product_id}")

    @task(50)
    def buy(self) -> None:
        _buy(self, self.user_id, _popular_product())

    @task(10)
    def my_orders(self) -> None:
        self.client.get(f"/api/users/{self.user_id}/orders", name="/api/users/{user_id}/orders")

    @task(10)
    def admin_stats(self) -> None:
        self.client.get("/api/admin/stats", name="/api/admin/stats",
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


class StampedeBuyer(HttpUser):
    """Every user tries to buy the same product at once, once."""

    wait_time = between(0, 0.05)

    def on_start(self) -> None:
        self.user_id = f"stampede-{uuid.uuid4().hex[:12]}"

    @task
    def buy_once(self) -> None:
        _buy(self, self.user_id, STAMPEDE_PRODUCT)
        # One attempt per buyer, as in a real stampede; the user leaves whatever the answer.
        raise StopUser()


if SCENARIO == "stampede":
    del Shopper
else:
    del StampedeBuyer


if SCENARIO == "step":

    class StepShape(LoadTestShape):
        """Rising users in steps until the run ends or a gate breaks; run.py reports the best step."""

        step_users = int(os.environ.get("SCALEMART_STEP_USERS", "25"))
        step_seconds = int(os.environ.get("SCALEMART_STEP_SECONDS", "15"))
        max_users = int(os.environ.get("SCALEMART_STEP_MAX", "400"))

        def tick(self) -> tuple[int, float] | None:
            run_time = self.get_run_time()
            step = int(run_time // self.step_seconds) + 1
            users = step * self.step_users
            if users > self.max_users:
                return None
            return users, float(self.step_users)


@events.quitting.add_listener
def apply_gates(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    if SCENARIO == "step" or environment.runner is None:
        return
    total = environment.runner.stats.total
    failures = gate_failures(total.num_requests, total.num_failures, total.get_response_time_percentile(0.95) or 0.0,
                             P95_GATE_MS, ERROR_GATE)
    report = os.environ.get("SCALEMART_GATES_REPORT")
    if report:
        with open(report, "w") as fh:
            json.dump({"failures": failures}, fh)
    if failures:
        for line in failures:
            print(f"GATE FAILED: {line}", flush=True)
        environment.process_exit_code = 1
