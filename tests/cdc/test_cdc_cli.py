"""``choreo cdc`` against the real Connect: a module's connectors applied, watched, removed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from builders import placed
from cdc_kit import CdcKit
from confluent_kafka.admin import AdminClient

from choreo._cli.main import main
from choreo._schemas import Catalog
from choreo.cdc import ConnectorState
from choreo.outbox import Outbox, OutboxRelay, outbox_ddl

pytestmark = pytest.mark.stack


def write_module(directory: Path, body: str) -> str:
    name = f"cdc_cli_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(body)
    return name


def relay_module(cdc: CdcKit, name: str, directory: Path) -> tuple[str, OutboxRelay]:
    """A service module declaring one ``OutboxRelay`` on ``public.<name>``, and that relay
    (removed after the test by the ``cdc`` fixture)."""
    relay = OutboxRelay(name=name, database=cdc.database, table=f"public.{name}")
    cdc.connectors.append(relay)
    module = write_module(
        directory,
        "from choreo.cdc import Postgres\n"
        "from choreo.outbox import OutboxRelay\n\n"
        f"relay = OutboxRelay(name={name!r}, database=Postgres.from_dsn({cdc.dsn!r}),"
        f" table='public.{name}')\n",
    )
    return module, relay


def wait_for(cdc: CdcKit, name: str, state: str, timeout_s: float = 30.0) -> ConnectorState:
    """Until the connector (or, for ``FAILED``, one of its tasks) is in ``state``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = cdc.connect.status(name)
        if found is not None and state in (found.state, *(t.state for t in found.tasks)):
            return found
        assert time.monotonic() < deadline, f"{name}: {found} never reached {state}"
        time.sleep(0.2)


def test_apply_status_pause_resume_delete_from_a_service_module(
    cdc: CdcKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = cdc.name("cli")
    cdc.tables.append(name)
    module, relay = relay_module(cdc, name, tmp_path)
    monkeypatch.chdir(tmp_path)
    url = ["--connect", cdc.connect.url]

    assert main(["cdc", "outbox-init", module]) == 0
    assert main(["cdc", "outbox-init", module]) == 0  # idempotent
    assert main(["cdc", "apply", module, *url, "--wait", "60"]) == 0
    assert main(["cdc", "apply", module, *url]) == 0
    assert main(["cdc", "status", module, *url]) == 0
    out = capsys.readouterr().out
    assert f"public.{name}: ready" in out
    assert f"{name}: created\n{name}: running\n{name}: unchanged\n" in out
    assert f"{name}: RUNNING (task 0 RUNNING)" in out

    assert main(["cdc", "pause", module, *url]) == 0
    wait_for(cdc, name, "PAUSED")
    assert main(["cdc", "status", module, *url]) == 1
    assert main(["cdc", "resume", module, *url]) == 0
    wait_for(cdc, name, "RUNNING")

    assert main(["cdc", "delete", module, *url, "--drop-slot"]) == 0
    assert main(["cdc", "status", module, *url]) == 1
    out = capsys.readouterr().out
    assert f"{name}: deleted\n{name}: slot {relay.slot_name} dropped" in out
    assert f"{name}: absent" in out
    with psycopg.connect(cdc.dsn) as conn:
        slots = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,)
        )
        assert slots.fetchone() == (0,)


def test_a_refused_config_and_a_failed_task_are_reported_with_connects_message(
    cdc: CdcKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = cdc.name("broken")
    cdc.tables.append(name)
    cdc.sql(outbox_ddl(f"public.{name}"), f"ALTER TABLE {name} DROP COLUMN topic")
    module = write_module(
        tmp_path,
        "from choreo.cdc import Postgres\n"
        "from choreo.outbox import OutboxRelay\n\n"
        f"relay = OutboxRelay(name={name!r}, database=Postgres.from_dsn({cdc.dsn!r}),"
        f" table='public.{name}')\n"
        f"wrong = OutboxRelay(name='{name}-pw', table='public.{name}',"
        " database=Postgres(host='127.0.0.1', port=%d, dbname='choreo', user='choreo',"
        " password='wrong'))\n" % cdc.database.port,
    )
    monkeypatch.chdir(tmp_path)
    url = ["--connect", cdc.connect.url]
    relay = OutboxRelay(name=name, database=cdc.database, table=f"public.{name}")
    cdc.connectors.append(relay)

    assert main(["cdc", "apply", f"{module}:wrong", *url]) == 1
    refused = capsys.readouterr().err
    assert f"PUT connector {name}-pw refused (400)" in refused
    assert 'password authentication failed for user "choreo"' in refused

    assert main(["cdc", "apply", f"{module}:relay", *url, "--wait", "60"]) == 0
    outbox = Outbox(cdc.catalog()[0], source="cli-test", table=f"public.{name}")
    row = outbox.row(placed())
    del row["topic"]  # the relay routes by a column this table lacks: the task fails
    with psycopg.connect(cdc.dsn) as conn:
        names = ", ".join(row)
        values = ", ".join(f"%({column})s" for column in row)
        conn.execute(f"INSERT INTO {name} ({names}) VALUES ({values})", row)
    wait_for(cdc, name, "FAILED")
    assert main(["cdc", "status", f"{module}:relay", *url]) == 1
    status = capsys.readouterr().out
    assert "task 0 FAILED" in status
    assert "\n  error: task 0: org.apache.kafka.connect.errors.ConnectException: " in status
    assert (
        "(cause: org.apache.kafka.connect.errors.DataException: topic is not a valid field name)"
        in status
    )


def test_apply_makes_the_catalogs_topics_before_a_relay_can_create_them_with_one_partition(
    cdc: CdcKit,
    isolated_schemas: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = cdc.name("topics")
    module, _ = relay_module(cdc, name, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHOREO_SCHEMAS_DIR", str(isolated_schemas))
    monkeypatch.setenv("CHOREO_BOOTSTRAP_SERVERS", cdc.kafka)
    catalog = Catalog.load(isolated_schemas)

    assert main(["cdc", "apply", module, "--connect", cdc.connect.url]) == 0
    assert f"the catalog's {len(catalog.topics)} topic(s) exist" in capsys.readouterr().err
    found = AdminClient({"bootstrap.servers": cdc.kafka}).list_topics(timeout=10).topics
    assert {t: len(found[t].partitions) for t in catalog.topics if t in found} == {
        t: spec.partitions for t, spec in catalog.topics.items()
    }
