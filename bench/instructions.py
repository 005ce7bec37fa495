"""Instructions per decoded or encoded record, counted by valgrind's callgrind: a figure load
cannot move.

```sh
.venv/bin/python bench/instructions.py               # 1,000 records, 1 and 4 passes
```

Each coder runs in its own process under ``valgrind --tool=callgrind`` twice, decoding (or
encoding) the same 1,000 ``compare.rich_event`` records (~200 B) once and then ``--passes``
times; the difference of the two totals divided by the extra records is the cost of one
record, free of start-up (imports, schema parsing, building the records), which both runs
share. Hash seeds are fixed so the two runs do the same start-up work, and the start-up heap
is frozen (`gc.freeze`) so full collections do not walk it. On a shared machine msgs/s moves
with other people's load; these counts do not.

- **naive**: what the raw loop does per record: check the 10-byte header, fastavro's
  ``schemaless_reader``, ``OrderPlaced.model_validate``.
- **choreo-validating**: ``Codec(catalog, fast=False).decoder(OrderPlaced)``: fastavro +
  pydantic.
- **choreo**: ``Codec(catalog).decoder(OrderPlaced)`` (the bound decode a service's handler
  gets): the reader generated for the writer's schema.
- **choreo-dumping-encode**: ``Codec(catalog, fast=False).encode``: what the naive relay loop
  does per output (``model_dump``, then fastavro's ``schemaless_writer`` after the 10-byte
  header) plus one dict lookup.
- **choreo-encode**: ``Codec(catalog).encode``: the writer generated for the model.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODERS = (
    "naive",
    "choreo-validating",
    "choreo",
    "choreo-dumping-encode",
    "choreo-encode",
)
RECORDS = 1000


def child(coder: str, passes: int) -> None:
    """Build the records, then decode (or encode) them ``passes`` times with ``coder``."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "bench" / "contenders")]
    from _common import make_decoder
    from compare import rich_event

    from choreo._schemas import Catalog, Codec
    from services.events import OrderPlaced

    catalog = Catalog.load(ROOT / "schemas")
    events = [rich_event(i) for i in range(RECORDS)]
    records: list[Any] = [Codec(catalog).encode(event) for event in events]
    run: Callable[[Any], object]
    if coder == "naive":
        run = make_decoder(OrderPlaced)
    elif coder.endswith("-encode"):
        run, records = Codec(catalog, fast=coder == "choreo-encode").encode, events
    else:
        run = Codec(catalog, fast=coder == "choreo").decoder(OrderPlaced)  # as a service does

    run(records[0])  # bind readers and writers before the counted passes in both runs alike
    # The start-up heap out of the collector's way: otherwise a full collection's walk over it
    # (more or fewer of them with the pass count, its size moving with any import) is counted.
    gc.collect()
    gc.freeze()
    for _ in range(passes):
        for value in records:
            run(value)


def count(coder: str, passes: int) -> int:
    """Instructions of one child process under callgrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", coder, "--passes", str(passes),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind for {coder}:\n{result.stderr}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--coders", default=",".join(CODERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.passes)
        return
    print("| coder | instructions per record | ratio to naive |")
    print("|---|---:|---:|")
    naive: dict[bool, float] = {}  # per direction: the first coder of each is the baseline
    for coder in args.coders.split(","):
        extra = count(coder, args.passes) - count(coder, 1)
        per_record = extra / ((args.passes - 1) * RECORDS)
        baseline = naive.setdefault(coder.endswith("-encode"), per_record)
        print(f"| {coder} | {per_record:,.0f} | {baseline / per_record:.2f} |", flush=True)


if __name__ == "__main__":
    main()
