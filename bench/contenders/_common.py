"""What every contender shares: the event model, the decode step and the measuring child.

Imported in each contender's own venv, so it needs only the standard library, fastavro and
pydantic (every venv pins both). The model here mirrors ``services.events.OrderPlaced`` field
for field and constraint for constraint (frozen, ``extra="forbid"``, ``decimal(10,2)``, aware
timestamps, 32-bit ints) so a third-party contender validates exactly as much as choreo does;
the contenders that run in choreo's own venv use the generated model itself.

A contender module has ``run(args, meter)`` for the consume scenario: it consumes
``args.count`` events from ``args.topic`` and calls ``meter.seen()`` once per handled event.
The meter prints the result line the moment the last event is handled, so a framework's slow or
awkward shutdown is not counted (and cannot hang the run: the harness kills a child that
outlives its grace period). ``relay(args, meter)`` is the second scenario: for each input, emit
one ``StockReserved`` to ``args.sink`` (``make_relay`` builds it) and commit as the framework
does; with ``--count 0`` it relays until the harness stops it (the latency runs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "shop"
SCHEMA_FILE = SCHEMAS / "orders" / "OrderPlaced.v2.avsc"
OUT_SCHEMA_FILE = SCHEMAS / "inventory" / "StockReserved.v1.avsc"
MAGIC = b"\xc3\x01"
CORRELATION = "choreo_correlation_id"
RESERVATION = uuid.UUID(int=1)


@cache
def order_model() -> Any:
    """The pydantic twin of choreo's generated ``OrderPlaced`` (built lazily: pydantic import)."""
    from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

    int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
    money = Annotated[Decimal, Field(max_digits=10, decimal_places=2)]

    class Record(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    class LineItem(Record):
        sku: str
        quantity: int32
        unit_price: money

    class Address(Record):
        line1: str
        line2: str | None = None
        city: str
        postal_code: str
        country: str

    class OrderPlaced(Record):
        order_id: str
        customer_id: str
        items: list[LineItem]
        total: money
        currency: str
        shipping_address: Address
        placed_at: AwareDatetime
        coupon_code: str | None = None

    return OrderPlaced


@cache
def reserved_model() -> Any:
    """The pydantic twin of choreo's generated ``StockReserved``, the relay's output."""
    from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

    int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

    class Record(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    class ReservedLine(Record):
        sku: str
        quantity: int32
        warehouse: str

    class StockReserved(Record):
        order_id: str
        reservation_id: uuid.UUID
        items: list[ReservedLine]
        reserved_at: AwareDatetime
        expires_at: AwareDatetime

    StockReserved.line = ReservedLine  # type: ignore[attr-defined]
    return StockReserved


def reserve(event: Any, out_model: Any, line_model: Any) -> Any:
    """The relay's handler, the same in every contender: the order's lines, in one warehouse."""
    return out_model(
        order_id=event.order_id,
        reservation_id=RESERVATION,
        items=[line_model(sku=i.sku, quantity=i.quantity, warehouse="PAR-1") for i in event.items],
        reserved_at=event.placed_at,
        expires_at=event.placed_at,
    )


def make_relay(in_model: Any = None, out_model: Any = None, line_model: Any = None) -> Any:
    """``relay(value, headers) -> (key, value, headers)``: the second scenario's per-event work.

    Decode and validate the input as ``make_decoder`` does, build the ``StockReserved`` model,
    encode it as choreo does (``model_dump``, then fastavro's writer after the single-object
    header) and give it choreo's headers: a fresh ``ce_id``, type, source, time, the input's
    correlation id (which carries its produce time for the latency runs) and its ``ce_id`` as
    causation. ``headers`` is a list of pairs or a mapping, values bytes or str.
    """
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    decode = make_decoder(in_model)
    out_model = out_model or reserved_model()
    line_model = line_model or out_model.line
    schema = fastavro.parse_schema(json.loads(OUT_SCHEMA_FILE.read_text()))
    header = MAGIC + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    writer = fastavro.schemaless_writer
    fixed = [("ce_type", b"shop.inventory.StockReserved"), ("ce_source", b"bench")]
    fixed.append(("ce_specversion", b"1.0"))

    def relay(value: bytes, headers: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        event = reserve(decode(value), out_model, line_model)
        out = BytesIO()
        out.write(header)
        writer(out, schema, event.model_dump(by_alias=True))
        found = dict(headers.items() if hasattr(headers, "items") else headers or ())
        now = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
        meta = [("ce_id", str(uuid.uuid4()).encode()), *fixed, ("ce_time", now)]
        meta.append((CORRELATION, _bytes(found.get(CORRELATION, b""))))
        meta.append(("choreo_causation_id", _bytes(found.get("ce_id", b""))))
        return event.order_id.encode(), out.getvalue(), meta

    return relay


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def make_decoder(model: Any = None) -> Any:
    """``decode(value) -> model``: check the single-object header, read the body, validate.

    The fingerprint is checked against the schema's own, as choreo's codec does, so a contender
    does not skip work choreo must do.
    """
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    schema = fastavro.parse_schema(json.loads(SCHEMA_FILE.read_text()))
    header = MAGIC + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    reader = fastavro.schemaless_reader
    validate = (model or order_model()).model_validate

    def decode(value: bytes) -> Any:
        if value[:10] != header:
            raise ValueError("not a single-object OrderPlaced v2 body")
        return validate(reader(BytesIO(value[10:]), schema, None))

    return decode


class Meter:
    """Counts handled events and prints the result line when the last one is in."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.handled = 0
        self.began_wall = time.perf_counter()
        self.began_cpu = time.process_time()
        self.first = 0.0
        self.first_cpu = 0.0
        self.finished = False
        # A duplicate of fd 1, because faust's worker swaps sys.stdout for a logger.
        self.out = os.dup(1)

    def seen(self) -> bool:
        """Count one handled event; True once all are in (the contender should then stop)."""
        self.handled += 1
        if self.handled == 1:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()
        if self.handled >= self.count and not self.finished:
            self.finished = True
            now = time.perf_counter()
            result = {
                "wall": now - self.began_wall,
                "steady": now - self.first,
                "cpu": time.process_time() - self.began_cpu,
                "steady_cpu": time.process_time() - self.first_cpu,
                "rss_mb": peak_rss_mb(),
            }
            os.write(self.out, (json.dumps(result) + "\n").encode())
        return self.finished


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that across ``execve``, so a child started by a harness
    that had filled a topic reports the harness's peak when its own is lower.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_main() -> None:
    """``python _common.py CONTENDER --bootstrap B --topic T --count N [--sink U]``: one run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("contender")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--sink", help="relay scenario: emit one event per input here")
    args = parser.parse_args()
    meter = Meter(args.count or sys.maxsize)  # 0: relay until stopped (the latency runs)
    module_name, _, variant = args.contender.partition(":")
    args.variant = variant
    module = importlib.import_module(module_name)
    if args.sink:
        module.relay(args, meter)
    else:
        module.run(args, meter)
    os._exit(0 if meter.finished or not args.count else 3)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    child_main()
