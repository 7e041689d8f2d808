"""Prometheus metrics, in a registry owned by one app (no process-global state).

Provider state is not tracked by hand: a collector reads every provider's health snapshot
when /metrics is scraped, so it can never drift from what routing sees.

Under ``--workers N`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` (one directory per run):
prometheus-client then keeps counters and histograms in files there, and /metrics adds up
every worker's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from llm_api_router.config import ProviderConfig
from llm_api_router.errors import AttemptRecord
from llm_api_router.health import HealthSnapshot, ProviderState

__all__ = ["CONTENT_TYPE", "RouterMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

#: (family, provider, its state) for every provider, at the given time.
ProviderTable = Callable[[float], Iterable[tuple[str, ProviderConfig, HealthSnapshot]]]

#: Set by the CLI for ``--workers N``; prometheus-client reads it too.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _SharedStateCollector(Collector):
    def __init__(self, status: Callable[[], str]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "llm_router_shared_state_up",
            "1 while provider state is shared through Redis and Redis answers; 0 when it is "
            "unreachable or not configured",
            value=1.0 if self._status() == "ok" else 0.0,
        )


class _ProviderStateCollector(Collector):
    def __init__(self, providers: ProviderTable, clock: Callable[[], float]) -> None:
        self._providers = providers
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "llm_router_provider_state",
            "1 for the provider's current state (healthy, cooling_down, circuit_open, "
            "half_open), 0 for the others",
            labels=["family", "provider", "state"],
        )
        left = GaugeMetricFamily(
            "llm_router_provider_cooldown_seconds",
            "Seconds until the provider may be tried again",
            labels=["family", "provider"],
        )
        failures = GaugeMetricFamily(
            "llm_router_provider_recent_failures",
            "Failures of the provider in the last five minutes",
            labels=["family", "provider"],
        )
        now = self._clock()
        for family, provider, snapshot in self._providers(now):
            for candidate in ProviderState:
                state.add_metric(
                    [family, provider.name, candidate.value],
                    1.0 if snapshot.state is candidate else 0.0,
                )
            left.add_metric([family, provider.name], snapshot.seconds_left)
            failures.add_metric([family, provider.name], snapshot.recent_failures)
        yield state
        yield left
        yield failures


class RouterMetrics:
    """Every metric the router exports, registered in its own registry."""

    def __init__(
        self,
        providers: ProviderTable,
        clock: Callable[[], float],
        *,
        shared_state: Callable[[], str] = lambda: "off",
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        registry = self.registry
        self.requests = Counter(
            "llm_router_requests",
            "Client requests answered, by family, operation, provider that answered and status",
            ["family", "provider", "status", "operation"],
            registry=registry,
        )
        self.attempts = Counter(
            "llm_router_upstream_attempts",
            "Upstream attempts by family, provider and outcome",
            ["family", "provider", "outcome"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "llm_router_fallbacks",
            "Moves to the next provider, by the reason the previous one was left",
            ["family", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "llm_router_retries",
            "Retries of the same provider, by reason",
            ["family", "provider", "reason"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "llm_router_upstream_latency_seconds",
            "Time of each upstream attempt until its answer (streams: until the first event)",
            ["family", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "llm_router_overhead_seconds",
            "Time spent in the router itself, excluding waiting for upstreams",
            ["family"],
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "llm_router_in_flight_requests",
            "Client requests being served now",
            ["family"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pinned = Counter(
            "llm_router_pinned_requests",
            "Requests kept on one account (it owns an object they refer to) or one provider "
            "(their session's last), by reason",
            ["family", "reason"],
            registry=registry,
        )
        self.stream_outcomes = Counter(
            "llm_router_stream_outcomes",
            "How relayed streams ended (complete, cut, stalled, upstream_error, "
            "client_disconnected)",
            ["family", "provider", "outcome"],
            registry=registry,
        )
        # Provider state comes from this process's (shared, with Redis) view, not from files.
        self._views: tuple[Collector, ...] = (
            _ProviderStateCollector(providers, clock),
            _SharedStateCollector(shared_state),
        )
        for view in self._views:
            registry.register(view)
        # labels() costs microseconds per call; every label set is looked up once, then kept.
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached."""
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_request(
        self, family: str, provider: str, status: int, operation: str = "chat"
    ) -> None:
        self.child(self.requests, family, provider, str(status), operation).inc()

    def observe_attempts(self, family: str, attempts: Sequence[AttemptRecord]) -> None:
        """Count attempts, retries (same provider again) and fallbacks (next provider)."""
        child = self.child
        for index, attempt in enumerate(attempts):
            child(self.attempts, family, attempt.provider, attempt.outcome).inc()
            child(self.upstream_latency, family, attempt.provider).observe(attempt.latency)
            if index + 1 < len(attempts):
                if attempts[index + 1].provider == attempt.provider:
                    child(self.retries, family, attempt.provider, attempt.outcome).inc()
                else:
                    child(self.fallbacks, family, attempt.outcome).inc()

    def render(self) -> bytes:
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        for view in self._views:
            registry.register(view)
        return generate_latest(registry)
