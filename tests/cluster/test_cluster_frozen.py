"""An exactly-once relay frozen (SIGSTOP) past its transaction timeout and its session timeout.

Meanwhile the coordinator expires its open transaction (bumping its producer's epoch, which
librdkafka reports as fenced) and the group drops the member. Thawed, the relay must take a
new producer, read again from its last committed offsets and go on: every output once, as
read_committed readers see it, and the service never exits.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from cluster_kit import (
    EXACT,
    OrderFeed,
    Relaying,
    beyond_inputs,
    outputs_by_source,
    wait_until,
)

pytestmark = pytest.mark.stack
TRANSACTION_TIMEOUT_S = 10
FROZEN_S = 25
"""Past the transaction timeout plus the broker's 10 s check for expired transactions."""


def test_a_relay_frozen_past_its_transaction_timeout_goes_on_exactly_once(
    kafka: str, relaying: Relaying, tmp_path: Path
) -> None:
    config = tmp_path / "choreo.toml"
    timeout_ms = TRANSACTION_TIMEOUT_S * 1000
    config.write_text(f'[kafka.client_options]\n"transaction.timeout.ms" = "{timeout_ms}"\n')
    exact = relaying.start_exact(config)
    feed = OrderFeed(kafka, relaying.catalog, relaying.seed, rate=100, limit=2000)
    feed.start()
    wait_until(lambda: relaying.handled() >= 300, 90, "300 handled")

    exact.send_signal(signal.SIGSTOP)  # with a transaction open: records arrive 100 a second
    time.sleep(FROZEN_S)
    exact.send_signal(signal.SIGCONT)
    sent = feed.finish()
    assert sent == 2000 and not feed.errors, feed.errors
    inputs = feed.settle()

    seen = outputs_by_source(kafka, relaying.outputs, sent, (EXACT,))[EXACT]
    assert set(seen) == {f"in-{relaying.seed}-{i}" for i in range(sent)}, "an output is missing"
    twice = beyond_inputs(seen, inputs)
    assert not twice, f"outputs seen more often than their input (read_committed): {twice}"
    assert exact.poll() is None, "the relay exited"
    log = "".join(path.read_text() for path in tmp_path.glob("eos_service-*.log"))
    renewed = log.count("a new producer takes over")
    aborted = log.count("aborting the transaction") + log.count("transaction aborted")
    assert renewed + aborted > 0, f"the freeze cost no transaction: nothing was tested\n{log}"
    print(
        f"frozen {FROZEN_S}s: producer renewed {renewed}x, transactions aborted {aborted}x; "
        f"{sent} outputs once, {relaying.handled() - sent} handlings redone"
    )
