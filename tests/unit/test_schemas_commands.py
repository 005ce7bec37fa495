"""`choreo schemas check | codegen` as CI and a developer see them: lines printed, exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from choreo._schemas import check_command, codegen_command

ROOT = Path(__file__).resolve().parents[2]
PLACED = Path("schemas/shop/orders/OrderPlaced.v2.avsc")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the example project: schemas/ and the models generated from them."""
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    shutil.copytree(
        ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def add_version(root: Path, field: dict[str, object]) -> None:
    schema = json.loads((root / PLACED).read_text())
    schema["fields"].append(field)
    (root / PLACED.with_name("OrderPlaced.v3.avsc")).write_text(json.dumps(schema))


def test_check_passes_on_the_example(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(root) == 0
    assert capsys.readouterr().out == "ok: 37 event types on 9 topics\n"


def test_check_reports_stale_models(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_version(root, {"name": "gift_wrap", "type": "boolean", "default": False})

    assert check_command(root) == 1
    assert capsys.readouterr().out == (
        "stale: services/events.py does not match schemas/; run `choreo schemas codegen`\n"
    )


def test_codegen_makes_check_pass_again(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_version(root, {"name": "gift_wrap", "type": "boolean", "default": False})

    assert codegen_command(root) == 0
    assert check_command(root) == 0
    assert "gift_wrap: bool = False" in (root / "services" / "events.py").read_text()
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {root / 'services' / 'events.py'}"


def test_check_reports_each_incompatibility(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_version(root, {"name": "gift_wrap", "type": "boolean"})
    codegen_command(root)
    capsys.readouterr()

    assert check_command(root) == 1
    assert capsys.readouterr().out.splitlines() == [
        "incompatible: shop.orders.OrderPlaced v3 is not backward compatible with v1: "
        "field 'gift_wrap' was added without a default",
        "incompatible: shop.orders.OrderPlaced v3 is not backward compatible with v2: "
        "field 'gift_wrap' was added without a default",
    ]


def test_check_reports_a_broken_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / PLACED).write_text("{")

    assert check_command(root) == 1
    assert capsys.readouterr().out.startswith(f"error: {root / PLACED}: cannot read JSON")


def test_codegen_reports_a_broken_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / PLACED).write_text("{")

    assert codegen_command(root) == 1
    assert capsys.readouterr().out.startswith("error: ")
