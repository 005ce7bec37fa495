"""``python -m demo`` (``make demo``): run the order pipeline end to end and report.

Starts every service, the saga tracker and the ingress against the local stack (``choreo dev
up`` must have run: ``make demo`` does it), sends the orders, approves and rejects what waits
for a manager, shows progress until every saga has finished, then prints the summary. Exit
code 0 only if every saga ended as its scenario expects, the customer of every order that
did not go through was told why (a rejection in the manager's words), and the poison message
was dead-lettered.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import threading
import time
from pathlib import Path

import choreo
from choreo._console import jaeger_ui_present, saga_url
from choreo._dev.settings import StackSettings, default_paths
from choreo._runtime.dead_letters import dlq_topic
from choreo._schemas import Catalog
from demo import scenarios, traffic, view, watch
from demo.fleet import Fleet, free_port
from services.catalog_sync import demo as catalog_demo
from services.catalog_sync.settings import Settings as CatalogSettings
from services.events import OrderReceived
from services.order_saga import order_saga

FOLLOW_UP_DELAY_S = 5
"""A week of waiting for the survey, shortened for the demo."""
APPROVAL_TIMEOUT_S = 20
"""How long the demo's high-value orders wait for the manager."""
NOTICE_WAIT_S = 30
"""How long after the sagas finished the last customer notices may take to arrive."""
CRASHES = (
    (1 / 3, ("payments", "inventory")),
    (2 / 3, ("shipping", "saga-tracker", "approvals", "notifications")),
)
"""``--chaos``: who is killed once this share of the orders is in."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--orders", type=int, default=300, help="how many orders (default 300)")
    parser.add_argument("--rate", type=float, default=50.0, help="orders per second (default 50)")
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="give up after this many seconds"
    )
    parser.add_argument(
        "--products", type=int, default=3000, help="product changes for the CDC pipeline"
    )
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL and restart services and the tracker while orders flow",
    )
    args = parser.parse_args(argv)
    stack = StackSettings()
    run_id = f"demo-{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
    orders = scenarios.plan(args.orders, run_id)
    secret = secrets.token_hex(16)
    env = {
        "CHOREO_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "SHOP_DSN": stack.postgres_dsn,
        "SHOP_FOLLOW_UP_DELAY_S": str(FOLLOW_UP_DELAY_S),
        "SHOP_APPROVAL_TIMEOUT_S": str(APPROVAL_TIMEOUT_S),
        "SHOP_SHIPMENT_TIMEOUT_S": "60",
        "CHOREO_INGRESS__SECRET": secret,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_endpoint,
        "CATALOG_SYNC_DSN": stack.postgres_dsn,
    }
    catalog = CatalogSettings.from_env(env)
    catalog_demo.prepare(catalog, stack.connect_url)  # tables, and the Debezium connector
    config = choreo.ServiceConfig(
        kafka=choreo.KafkaConfig(bootstrap_servers=stack.bootstrap_servers)
    )
    logs = default_paths().state / "logs" / "demo"
    print(f"{len(orders)} orders ({run_id}); service logs in {logs}")
    fleet = Fleet(env, logs, free_port())
    with fleet:
        started = time.monotonic()
        fleet.wait_ready()
        print(f"{len(fleet.processes)} processes ready in {time.monotonic() - started:.1f}s")
        dlq_before = watch.dlq_ends(stack.bootstrap_servers)
        event_catalog = Catalog.load(Path("schemas"))
        order_ids = [o.order_id for o in orders]
        watcher = watch.SagaWatcher(stack.bootstrap_servers, order_saga.name, order_ids)
        told = watch.NoticeWatcher(stack.bootstrap_servers, event_catalog, order_ids)
        desk = traffic.ApprovalDesk(orders, stack.postgres_dsn, config)
        desk.start()
        sent: list[str] = []
        customers = traffic.Customers(orders, sent, config)
        customers.start()
        orders_topic = event_catalog.topic_of(OrderReceived.event_type).name
        poison_key = f"{orders[0].order_id}-poison"
        traffic.send_poison(stack.bootstrap_servers, orders_topic, poison_key)
        verdicts, elapsed, send_s = _drive(
            fleet, orders, sent, watcher, (desk, customers), stack, secret, args
        )
        desk.stop()
        customers.stop()
        watcher.close()
        print(f"\nCDC pipeline: {args.products} product changes in PostgreSQL ...", flush=True)
        products = catalog_demo.run_demo(args.products, catalog)
        expected_told = [v.order.order_id for v in verdicts if v.customer_told]
        notices = told.wait_for(expected_told, NOTICE_WAIT_S)
        told.close()
    # After the stop: every process has flushed its spans.
    added = watch.dlq_added(stack.bootstrap_servers, dlq_before)
    print(view.summary(verdicts, elapsed, send_s, added, _traces(verdicts, stack)))
    notice_lines, told_ok = view.notices(verdicts, notices, traffic.REJECTION_COMMENT)
    print("\n".join(notice_lines))
    print(f"\nCDC pipeline (products -> reporting.product_snapshot): {products}")
    poisoned = added.get(dlq_topic("orders", orders_topic), 0) >= 1
    ok = all(v.as_expected for v in verdicts) and poisoned and told_ok
    ok = ok and desk.error is None and customers.error is None
    if not poisoned:
        print("the poison message did not reach the orders service's dead-letter topic")
    if not ok:  # what each process last said: a stalled one shows why
        for process in fleet.processes:
            print(f"\n--- {process.name}, the end of {process.log}:\n{process.tail(6)}")
        print("\n" + "\n".join(view.unexpected(verdicts)))
    print("\nEvery saga ended as its scenario expects." if ok else "\nDEMO FAILED")
    return 0 if ok else 1


def _drive(
    fleet: Fleet,
    orders: list[scenarios.PlannedOrder],
    sent: list[str],
    watcher: watch.SagaWatcher,
    people: tuple[traffic.ApprovalDesk, traffic.Customers],
    stack: StackSettings,
    secret: str,
    args: argparse.Namespace,
) -> tuple[list[view.Verdict], float, float]:
    """Send, then refresh the progress view until every saga finished (or the timeout)."""
    desk = people[0]
    failure: list[BaseException] = []
    url = f"http://127.0.0.1:{fleet.ingress_port}/orders"

    crashes = {math.ceil(share * len(orders)): names for share, names in CRASHES}

    def crash(n: int) -> None:
        for name in crashes.get(n, ()) if args.chaos else ():
            fleet.crash_and_restart(name)
        if args.chaos and n in crashes:
            print(f"SIGKILLed and restarted {', '.join(crashes[n])} before order {n}")

    def send() -> None:
        try:
            traffic.send_orders(orders, url, secret, args.rate, sent, crash)
        except BaseException as error:
            failure.append(error)

    started = time.monotonic()
    sender = threading.Thread(target=send, name="orders", daemon=True)
    sender.start()
    progress = view.Progress(len(orders))
    send_s = 0.0
    while True:
        fleet.check_alive()
        if failure:
            raise failure[0]
        for person in people:
            if person.error is not None:
                raise person.error
        verdicts = view.verdicts(orders, watcher.snapshot())
        elapsed = time.monotonic() - started
        if not send_s and not sender.is_alive():
            send_s = elapsed
        progress.show(verdicts, len(sent), desk.waiting, elapsed)
        if view.finished(verdicts) or elapsed > args.timeout:
            return verdicts, elapsed, send_s or elapsed
        time.sleep(0.5)


def _traces(
    verdicts: list[view.Verdict], stack: StackSettings
) -> dict[str, tuple[str, int, list[str]]]:
    """One completed and one compensated saga (the longest of each), with what Jaeger holds.

    Linked to Jaeger's UI where this Jaeger has one, else (the local stack's Jaeger, built
    from the Go module proxy, serves a placeholder page) to the saga's page in ``choreo
    console``, which draws the trace from Jaeger's query API."""
    ui = jaeger_ui_present(stack.jaeger_query_url)
    found: dict[str, tuple[str, int, list[str]]] = {}
    for status in ("completed", "compensated"):
        states = [v.state for v in verdicts if v.state and v.status == status]
        state = max(states, key=lambda s: len(s.history), default=None)
        trace_id = watch.trace_of(state) if state else None
        if state is None or trace_id is None:
            continue
        spans, services = watch.jaeger_trace(stack.jaeger_query_url, trace_id)
        link = (
            f"{stack.jaeger_query_url}/trace/{trace_id}"
            if ui
            else saga_url(state.saga, state.saga_id)
        )
        found[status] = (link, spans, services)
    return found


if __name__ == "__main__":
    sys.exit(main())
