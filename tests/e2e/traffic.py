"""A light, steady load through the balancer for the end-to-end tests that stop parts of dev under it."""

from __future__ import annotations

import threading
import time

import httpx

CLIENTS = 4


class LightLoad:
    """CLIENTS threads reading the catalogue through the balancer, ~5 requests/s each.

    Like a browser, a client resends a GET once when the balancer closed the kept-alive connection
    just as the request went out (nginx closes idle connections when it reloads; RFC 9112 9.3.1
    lets a client retry an idempotent request then). Those resends are counted apart.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[float, int]] = []  # (monotonic time, status or 0 for a transport error)
        self.resent: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _get(self, client: httpx.Client) -> int:
        try:
            return client.get("/api/products").status_code
        except httpx.RemoteProtocolError as exc:  # closed without an answer: resend once on a new connection
            self.resent.append(str(exc))
        except httpx.TransportError:
            return 0
        try:
            return client.get("/api/products").status_code
        except httpx.TransportError:
            return 0

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                self.results.append((time.monotonic(), self._get(client)))
                time.sleep(0.2)

    def __enter__(self) -> LightLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
