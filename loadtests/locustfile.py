"""Locust users and shapes for ScaleMart: normal traffic, the flash sale, the stampede, and a step shape.

The scenario is picked with SCALEMART_SCENARIO (normal | flash | stampede | step) and the think time
with SCALEMART_THINK ("0.5-2", seconds); `loadtests/run.py` sets both, prepares the products and
checks the results. Users are FastHttpUsers (geventhttpclient): python-requests costs several
times the CPU per request, and a load generator that saturates measures itself, not the shop.
Gates come from the thresholds file (`alert_rules/thresholds.yml`, section `loadtest`) and are
applied when Locust quits.
"""

from __future__ import annotations

import json
import os
import random
import uuid

from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from loadtests import buyers
from loadtests.gates import Gates, gate_failures, generator_saturation, parse_think

SCENARIO = os.environ.get("SCALEMART_SCENARIO", "normal")
PRODUCTS = [p for p in os.environ.get("SCALEMART_PRODUCTS", "").split(",") if p]
STAMPEDE_PRODUCT = os.environ.get("SCALEMART_STAMPEDE_PRODUCT", "")
ADMIN_TOKEN = os.environ.get("SCALEMART_ADMIN_TOKEN", "")
BUYER_KEY = os.environ.get(buyers.KEY_VAR, "")
GATES = Gates.from_thresholds()
P95_GATE_MS = GATES.p95_ms
ERROR_GATE = GATES.error_ratio
CPU_GATE_PERCENT = 100 * GATES.generator_cpu_ratio
THINK = parse_think(os.environ.get("SCALEMART_THINK", "0.5-2"))

# Answers that are expected outcomes of a flash sale, not errors.
EXPECTED_REFUSALS = {409}
_WEIGHTS = [1.0 / (i + 1) for i in range(len(PRODUCTS))]


def _popular_product() -> str:
    # Zipf-like popularity: the first products get most of the traffic, as in a real sale.
    return random.choices(PRODUCTS, weights=_WEIGHTS, k=1)[0]


def _buy(user: _ShopUser, product: str) -> None:
    body = {"product_id": product, "quantity": 1, "idempotency_key": uuid.uuid4().hex}
    with user.client.post("/api/buy", json=body, name="/api/buy", headers=user.buyer, catch_response=True) as resp:
        if resp.status_code in (200, 201) or resp.status_code in EXPECTED_REFUSALS:
            resp.success()
        else:
            resp.failure(f"buy answered {resp.status_code}: {(resp.text or '')[:200]}")


class _ShopUser(FastHttpUser):
    abstract = True
    # One keep-alive connection per simulated user, as a browser holds; a 10,000-user flash sale is
    # 10,000 connections through the balancer.
    concurrency = 1
    network_timeout = 30.0
    connection_timeout = 10.0
    buyer: dict[str, str]  # the Authorization header of this buyer's own token

    def as_buyer(self, user_id: str) -> None:
        self.user_id = user_id
        self.buyer = buyers.header(BUYER_KEY, user_id)  # as the shop's login hands one to each buyer


class Shopper(_ShopUser):
    """Normal behaviour: browse 30 %, buy 50 %, own orders 10 %, admin stats 10 %."""

    wait_time = between(*THINK)

    def on_start(self) -> None:
        self.as_buyer(f"load-{uuid.uuid4().hex[:12]}")
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @task(30)
    def view_products(self) -> None:
        if random.random() < 0.5:
            self.client.get("/api/products", name="/api/products")
        else:
            self.client.get(f"/api/products/{_popular_product()}", name="/api/products/{product_id}")

    @task(50)
    def buy(self) -> None:
        _buy(self, _popular_product())

    @task(10)
    def my_orders(self) -> None:
        self.client.get("/api/users/me/orders", name="/api/users/me/orders", headers=self.buyer)

    @task(10)
    def admin_stats(self) -> None:
        self.client.get("/api/admin/stats", name="/api/admin/stats", headers=self.admin)


class StampedeBuyer(_ShopUser):
    """Every user tries to buy the same product at once, once."""

    wait_time = between(0, 0.05)

    def on_start(self) -> None:
        self.as_buyer(f"stampede-{uuid.uuid4().hex[:12]}")

    @task
    def buy_once(self) -> None:
        _buy(self, STAMPEDE_PRODUCT)
        # One attempt per buyer, as in a real stampede; the user leaves whatever the answer.
        raise StopUser()


if SCENARIO == "stampede":
    del Shopper
else:
    del StampedeBuyer


def _generator_cpu(runner) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The latest CPU percentage of every Locust process: the master's own and each worker's heartbeat."""
    cpus = {"master": float(getattr(runner, "current_cpu_usage", 0.0))}
    cpus.update({str(node.id): float(node.cpu_usage) for node in getattr(runner, "clients", {}).values()})
    return cpus


if SCENARIO == "step":

    class StepShape(LoadTestShape):
        """Rising users in steps until the run ends, the cap is reached or the load generator saturates.

        A saturated generator measures itself: the shape stops there and writes the step to
        SCALEMART_SATURATION_REPORT, and run.py reports the best step before it as a floor.
        """

        step_users = int(os.environ.get("SCALEMART_STEP_USERS", "25"))
        step_seconds = int(os.environ.get("SCALEMART_STEP_SECONDS", "15"))
        max_users = int(os.environ.get("SCALEMART_STEP_MAX", "400"))
        samples: list[dict[str, float]] = []

        def tick(self) -> tuple[int, float] | None:
            run_time = self.get_run_time()
            step = int(run_time // self.step_seconds) + 1
            users = step * self.step_users
            if users > self.max_users:
                return None
            runner = self.runner
            if runner is None:
                return users, float(self.step_users)
            self.samples.append(_generator_cpu(runner))
            hot = generator_saturation(self.samples, CPU_GATE_PERCENT)
            if hot is not None:
                report = os.environ.get("SCALEMART_SATURATION_REPORT")
                if report:
                    with open(report, "w") as fh:
                        json.dump(
                            {"users": runner.user_count, "run_time_s": round(run_time, 1), "cpu_percent": hot}, fh
                        )
                print(
                    f"step shape: load generator saturated at {runner.user_count} users "
                    f"({hot:.0f} % of a core): stopping",
                    flush=True,
                )
                return None
            return users, float(self.step_users)


@events.quitting.add_listener
def apply_gates(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    # The master (or a lone process) holds the whole run's stats; a worker's are only its last report.
    if SCENARIO == "step" or environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return
    total = environment.runner.stats.total
    failures = gate_failures(
        total.num_requests, total.num_failures, total.get_response_time_percentile(0.95) or 0.0, P95_GATE_MS, ERROR_GATE
    )
    report = os.environ.get("SCALEMART_GATES_REPORT")
    if report:
        with open(report, "w") as fh:
            json.dump({"failures": failures}, fh)
    if failures:
        for line in failures:
            print(f"GATE FAILED: {line}", flush=True)
        environment.process_exit_code = 1
