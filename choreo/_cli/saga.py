"""``choreo saga run | ls | show``: run a saga tracker, and look at what it did."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from choreo._config import load_config
from choreo._errors import ConfigError, TopologyError
from choreo._observability import tracer_provider_from_env
from choreo._runtime.heap import TRACKER_YOUNG_THRESHOLD, gc_for_serving
from choreo._saga.definition import Saga
from choreo._saga.inspect import load_states, table, timeline
from choreo._saga.state import SagaStatus
from choreo._saga.tracker import SagaTracker
from choreo._security.redact import Redactor, redact_logs
from choreo._transport.confluent import librdkafka_settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    saga = commands.add_parser("saga", help="run a saga tracker; list and show saga states")
    saga.add_argument("--config", type=Path, help="TOML settings file (env CHOREO_* wins)")
    actions = saga.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="track the saga(s) defined in MODULE[:ATTRIBUTE]")
    run.add_argument("target", help="dotted module path, optionally module:attribute")
    run.add_argument(
        "--instance",
        help="stable id of this tracker instance: static membership, a fast restart "
        "(default: CHOREO_INSTANCE_ID, else one per process)",
    )
    run.set_defaults(handler=_run)
    ls = actions.add_parser("ls", help="list sagas from the state changelog")
    ls.add_argument("--saga", help="only sagas of this definition name")
    ls.add_argument("--state", choices=[s.value for s in SagaStatus], help="only this status")
    ls.set_defaults(handler=_ls)
    show = actions.add_parser("show", help="one saga's steps and timeline")
    show.add_argument("saga_id")
    show.add_argument("--saga", help="definition name, when ids repeat across sagas")
    show.set_defaults(handler=_show)


def find_sagas(target: str) -> list[Saga]:
    """The definitions at ``module:attribute`` (a Saga or a list), or every Saga in the module."""
    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(f"cannot import saga module {module_name!r}: {error}") from None
    if attribute:
        found = getattr(module, attribute, None)
        candidates = list(found) if isinstance(found, list | tuple) else [found]
    else:
        candidates = [value for value in vars(module).values() if isinstance(value, Saga)]
    sagas = [s for s in candidates if isinstance(s, Saga)]
    if not sagas or len(sagas) != len(candidates):
        raise TopologyError(f"{target} is not a choreo Saga (or a list of versions of one)")
    names = {s.name for s in sagas}
    if len(names) != 1:
        raise TopologyError(
            f"{target} defines sagas {', '.join(sorted(names))}; run one tracker per saga "
            "and name it with MODULE:ATTRIBUTE"
        )
    return sagas


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sagas = find_sagas(args.target)
    # Traces as `choreo run` turns them on (OTEL_* variables), as service choreo-saga-<saga>:
    # the source of the events the tracker emits.
    provider = tracer_provider_from_env(f"choreo-saga-{sagas[0].name}")
    config = load_config(args.config)
    redact_logs(Redactor(config.kafka.secrets()))
    try:
        stop = threading.Event()  # before any output: a stop sent on it is never fatal
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        tracker = SagaTracker(sagas, config, instance=args.instance, tracer_provider=provider)
        log = logging.getLogger("choreo.saga")
        log.info("traces %s", "off (set OTEL_EXPORTER_OTLP_ENDPOINT)" if provider is None else "on")
        tracker.run(
            stop,
            after_start=lambda: log.info(gc_for_serving(config.tune_gc, TRACKER_YOUNG_THRESHOLD)),
        )
    finally:
        if provider is not None:
            provider.shutdown()  # export the batched spans: the last ones explain the exit
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return librdkafka_settings(load_config(args.config).kafka)


def _ls(args: argparse.Namespace) -> int:
    states = load_states(_settings(args), args.saga)
    if args.state:
        states = [s for s in states if s.status.value == args.state]
    print(table(states))
    return 0


def _show(args: argparse.Namespace) -> int:
    found = [s for s in load_states(_settings(args), args.saga) if s.saga_id == args.saga_id]
    if not found:
        print(f"no saga {args.saga_id} in the state changelog(s)", file=sys.stderr)
        return 1
    print("\n\n".join(timeline(state) for state in found))
    return 0
