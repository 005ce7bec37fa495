"""Fixtures of the order services' tests."""

from __future__ import annotations

import pytest

import choreo
from services import (
    approval_desk,
    approvals,
    inventory,
    notifications,
    payments,
    settings,
    shipping,
)


@pytest.fixture
def shop_db(postgres: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database the services keep their state in, as the test's stack has it.

    The services read ``SHOP_DSN`` (default: the local stack) when imported, and connect on
    first use, so importing them needs no database. Where the test stack's PostgreSQL is
    elsewhere (``CHOREO_STACK=docker``), they are pointed at it for this test.
    """
    if postgres != settings.DSN:
        for module in (approvals, inventory, notifications, payments, shipping):
            store = choreo.PostgresIdempotency(postgres, setup=module.TABLES)
            monkeypatch.setattr(module.svc, "idempotency", store)
        monkeypatch.setattr(approval_desk, "DSN", postgres)
    return postgres
