"""A slow server only hurts its own calls: one deadline per exchange, a per-origin limit, no lock held.

Real sockets on 127.0.0.1: a stuck stand-in trickles its status line and headers one byte a second (or
never answers), a healthy one answers at once. Assertions are structural (who got data, who got which
error, which sockets were let go), never wall-clock comparisons; the latency figures are in
bench/outbound_isolation.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.stuck_servers import HealthyFhir, StuckServer

from cds_service.fhir_client import ClientSettings, FetchResult, FhirClient
from cds_service.outbound import OriginLimiter, origin

QUERIES = {"conditions": "Condition?patient=p", "allergies": "AllergyIntolerance?patient=p"}


@pytest.fixture
def healthy() -> Iterator[HealthyFhir]:
    with HealthyFhir() as server:
        yield server


@pytest.fixture(params=[True, False], ids=["trickling", "silent"])
def stuck(request: pytest.FixtureRequest) -> Iterator[StuckServer]:
    with StuckServer(trickle=request.param) as server:
        yield server


def _small_client(deadline: float = 2.0) -> FhirClient:
    # A pool of 4 threads, at most 2 for one server: two stuck calls held forever would take all of it.
    return FhirClient(
        ClientSettings(
            connect_timeout=1.0,
            read_timeout=30.0,  # longer than the deadline: the deadline alone must cut the exchange
            deadline=deadline,
            max_workers=2,
            calls_in_flight=1,
            max_per_origin=2,
        )
    )


def test_a_stuck_server_answers_with_a_deadline_error_and_its_sockets_are_let_go(
    stuck: StuckServer, healthy: HealthyFhir
) -> None:
    client = _small_client()
    for _ in range(3):  # more stuck calls than the pool could hold if their threads were not freed
        results = client.fetch_all(stuck.base_url, QUERIES, "tok")
        assert {key: r.error for key, r in results.items()} == {
            key: "the FHIR server did not answer within 2 s" for key in QUERIES
        }
    # Every connection the stuck server accepted was shut by the client, not left to trickle on.
    assert stuck.wait_for(lambda s: s.closed_by_client == s.accepted == 6)
    # The pool is free again: a follow-up call to a healthy server gets its data.
    follow_up = client.fetch_all(healthy.base_url, QUERIES, "tok")
    assert all(r.error is None and r.value["entry"] for r in follow_up.values())


def test_healthy_calls_complete_while_a_stuck_server_holds_its_share(
    stuck: StuckServer, healthy: HealthyFhir
) -> None:
    client = _small_client(deadline=3.0)
    stuck_results: list[dict[str, FetchResult]] = []
    caller = threading.Thread(
        target=lambda: stuck_results.append(client.fetch_all(stuck.base_url, QUERIES, "t"))
    )
    caller.start()
    assert stuck.wait_for(lambda s: s.accepted == 2)  # both stuck queries are in flight now
    healthy_results = [client.fetch_all(healthy.base_url, QUERIES, "t") for _ in range(5)]
    caller.join()
    assert all(r.error is None and r.value["entry"] for call in healthy_results for r in call.values())
    assert all(r.error and "did not answer within 3 s" in r.error for r in stuck_results[0].values())


def test_the_per_origin_limit_refuses_more_queries_to_a_stuck_server_at_once(
    stuck: StuckServer, healthy: HealthyFhir
) -> None:
    client = _small_client()
    four = {f"key{i}": f"Condition?patient=p{i}" for i in range(4)}
    results = client.fetch_all(stuck.base_url, four, "t")
    errors = sorted(r.error or "" for r in results.values())
    assert errors == [
        "the FHIR server already had 2 queries of this service in flight",
        "the FHIR server already had 2 queries of this service in flight",
        "the FHIR server did not answer within 2 s",
        "the FHIR server did not answer within 2 s",
    ]
    assert stuck.wait_for(lambda s: s.accepted == 2)
    assert all(r.error is None for r in client.fetch_all(healthy.base_url, QUERIES, "t").values())


def test_concurrent_calls_to_two_servers_do_not_share_a_limit(
    stuck: StuckServer, healthy: HealthyFhir
) -> None:
    client = _small_client()
    with ThreadPoolExecutor(max_workers=2) as callers:
        slow = callers.submit(client.fetch_all, stuck.base_url, QUERIES, "t")
        assert stuck.wait_for(lambda s: s.accepted == 2)
        fast = callers.submit(client.fetch_all, healthy.base_url, QUERIES, "t")
        assert all(r.error is None for r in fast.result().values())
        assert all(r.error for r in slow.result().values())


def test_the_origin_limiter_counts_per_origin_and_forgets_idle_ones() -> None:
    limiter = OriginLimiter(2)
    a, b = origin("https://A.example:443/fhir"), origin("https://a.example/other")
    assert a == b == "https://a.example:443"  # one origin, however the URL spells it
    assert limiter.try_acquire(a) and limiter.try_acquire(a)
    assert not limiter.try_acquire(a)  # full: refused at once, no waiting
    assert limiter.try_acquire(origin("http://a.example/fhir"))  # another scheme and port: its own slots
    limiter.release(a)
    assert limiter.try_acquire(a)
    for key in (a, a, origin("http://a.example/fhir")):
        limiter.release(key)
    assert limiter._in_flight == {}  # nothing kept for origins no longer called
