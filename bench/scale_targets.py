"""The targets ``bench/scale.py`` runs in its children: ``choreo run``, ``choreo saga run``.

The children are the real commands users deploy (``choreo run bench.scale_targets:service``,
``choreo saga run bench.scale_targets:order_saga``), configured by the usual ``CHOREO_*``
variables. Two more variables belong to the bench:

- ``CHOREO_SCALE_GATE``: a file whose appearance lets the import finish. The command imports its
  target before it joins the group, so the harness starts every child, lets Python and choreo
  load, then opens the gates when it wants each instance to join (all at once, or the second
  while the first is consuming, to see the rebalance).
- ``CHOREO_SCALE_HANDLER_MS``: how long the service's handler blocks per record (default 0),
  standing for a call to a database or another service: work that waits rather than computes.
- ``CHOREO_SCALE_OUT``: where the service's meter writes, at exit, each handled record's wall
  time and partition and the process CPU at its first and last record. The tracker needs no
  meter: the harness reads its changelog, whose record timestamps say when each event was
  decided.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import saga as saga_bench  # noqa: E402  (bench/saga.py: the tracker bench's saga definition)

import choreo  # noqa: E402
from services.events import OrderPlaced  # noqa: E402

GATE_POLL_S = 0.01


class Meter:
    """Per handled record: its wall time and partition (for the rate across processes, the
    partition split and the rebalance gap); the process CPU at the first and last record (so
    start-up and the idle wait for the stop are not counted)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.times = array("d")
        self.partitions = array("h")
        self.first_cpu = 0.0
        self.last_cpu = 0.0

    def seen(self, partition: int) -> None:
        if not self.times:
            self.first_cpu = time.process_time()
            self.out.with_suffix(".first").touch()  # the harness lets the second instance in
        self.times.append(time.time())
        self.partitions.append(partition)
        self.last_cpu = time.process_time()

    def dump(self) -> None:
        result = {
            "times": self.times.tolist(),
            "partitions": self.partitions.tolist(),
            "first_cpu": self.first_cpu,
            "last_cpu": self.last_cpu,
        }
        self.out.write_text(json.dumps(result))


def wait_for_gate() -> None:
    gate = os.environ.get("CHOREO_SCALE_GATE")
    while gate and not Path(gate).exists():
        time.sleep(GATE_POLL_S)


wait_for_gate()
service = choreo.Service("bench-scale")
order_saga = saga_bench.definition(os.environ.get("CHOREO_SCALE_SAGA", "bench-scale"))
_handler_s = float(os.environ.get("CHOREO_SCALE_HANDLER_MS", "0")) / 1000
_meter = Meter(Path(os.environ.get("CHOREO_SCALE_OUT", os.devnull)))
if "CHOREO_SCALE_OUT" in os.environ:
    atexit.register(_meter.dump)


@service.on(OrderPlaced)
def handle(event: OrderPlaced, ctx: choreo.Context) -> None:
    """A no-op handler with the meter (the framework's own cost per record is what scales), or
    one that waits ``CHOREO_SCALE_HANDLER_MS`` as a blocking client call would."""
    if _handler_s:
        time.sleep(_handler_s)
    if ctx.record is not None:
        _meter.seen(ctx.record.partition)
