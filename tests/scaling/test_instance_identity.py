"""Instance identity in exactly-once mode: two processes on one host do not fence each other
by default; two given the same ``CHOREO_INSTANCE_ID`` do, and the one fenced stops with one
line naming the id and the setting, not a storm of unretrieved futures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scale_kit import Instances, Load, create_topic, read_ledgers

from choreo._schemas import Catalog

pytestmark = pytest.mark.stack


def _instances(kafka: str, schemas: Path, tmp_path: Path, **env: str) -> tuple[Instances, Load]:
    catalog = Catalog.load(schemas)
    load = Load(kafka, catalog, rate=100.0)
    create_topic(kafka, load.topic, 2)
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    emitting = {"SCALE_EMIT": "true", "CHOREO_COMMIT_INTERVAL_S": "0.2"}
    return Instances(
        kafka, schemas, ledgers, {"CHOREO_EXACTLY_ONCE": "true", **emitting, **env}
    ), load


def test_two_exactly_once_processes_on_one_host_both_run_by_default(
    kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    instances, load = _instances(kafka, isolated_schemas, tmp_path)
    load.start()
    try:
        instances.start(0)
        instances.start(1)
        deadline = time.monotonic() + 90
        while len({h.pid for h in read_ledgers(instances.ledgers)}) < 2:
            assert time.monotonic() < deadline, f"both never handled records\n{instances.logs()}"
            time.sleep(0.2)
        time.sleep(3)
        assert all(p.poll() is None for p in instances.all), instances.logs()
    finally:
        load.finish()
        instances.stop_all()
    assert [p.returncode for p in instances.all] == [0, 0], instances.logs()


def _twin_stops_the_first(instances: Instances, load: Load) -> str:
    """The first instance handles records, a twin with its instance id starts; the first
    must exit 1 within a minute: returns its one ``choreo:`` line (its log when there is
    none, failing the caller's check)."""
    load.start()
    try:
        instances.start(0)
        deadline = time.monotonic() + 90
        while not read_ledgers(instances.ledgers):
            assert time.monotonic() < deadline, f"never handled records\n{instances.logs()}"
            time.sleep(0.2)
        instances.start(1)  # the same transactional id, or the same static member id
        first = instances.all[0]
        first.wait(60)
    finally:
        load.finish()
        instances.stop_all()
    output = (instances.ledgers / "slot-0-0.log").read_text()
    assert first.returncode == 1, output
    assert "never retrieved" not in output, output
    [line] = [x for x in output.splitlines() if x.startswith("choreo: ")]
    return line


def test_a_process_fenced_by_a_sibling_with_its_instance_id_stops_with_one_line(
    kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    instances, load = _instances(kafka, isolated_schemas, tmp_path, CHOREO_INSTANCE_ID="twin")
    line = _twin_stops_the_first(instances, load)
    assert f"'choreo.{instances.group}.twin'" in line and "CHOREO_INSTANCE_ID" in line, line


def test_a_static_member_fenced_by_a_twin_stops_with_one_line(
    kafka: str, isolated_schemas: Path, tmp_path: Path
) -> None:
    """At least once there is no producer to fence: the group fences the older static member,
    which used to log a warning and then idle forever, its partitions gone to the twin."""
    instances, load = _instances(
        kafka,
        isolated_schemas,
        tmp_path,
        CHOREO_EXACTLY_ONCE="false",
        CHOREO_INSTANCE_ID="twin",
        CHOREO_STATIC_MEMBERSHIP="true",
    )
    line = _twin_stops_the_first(instances, load)
    assert "same CHOREO_INSTANCE_ID" in line, line
