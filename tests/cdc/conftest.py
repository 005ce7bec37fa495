"""The ``cdc`` fixture: a ``CdcKit`` for the test, cleaned up even when the test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cdc_kit import CdcKit


@pytest.fixture
def cdc(kafka: str, postgres: str, connect: str) -> Iterator[CdcKit]:
    kit = CdcKit(kafka, postgres, connect)
    try:
        yield kit
    finally:
        kit.cleanup()
