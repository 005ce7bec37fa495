"""Generated requests against the v2 signature: a signature made for one request verifies for
that request and for no request that differs in any signed part (no server needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo._ingress import Rejection, Verifier
from choreo.ingress import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "property-secret"
NOW = 1_763_776_800

methods = st.sampled_from(["POST", "PUT", "PATCH"])
targets = st.from_regex(r"/[A-Za-z0-9._~/-]{0,30}(\?[A-Za-z0-9=&%._-]{0,30})?", fullmatch=True)
requests = st.tuples(methods, targets, st.binary(max_size=200), st.integers(NOW - 300, NOW + 300))


def _verify(headers: dict[str, str], method: str, target: str, body: bytes) -> int:
    return Verifier(SECRET).verify(
        headers[TIMESTAMP_HEADER],
        headers[SIGNATURE_HEADER],
        body,
        NOW,
        method=method,
        target=target,
    )


@given(requests, requests)
def test_a_signature_verifies_its_own_request_and_no_other(
    signed_for: tuple[str, str, bytes, int], sent: tuple[str, str, bytes, int]
) -> None:
    method, target, body, when = signed_for
    headers = sign(SECRET, body, method=method, target=target, timestamp=when)
    assert _verify(headers, method, target, body) == when
    other_method, other_target, other_body, other_when = sent
    moved = {**headers, TIMESTAMP_HEADER: str(other_when)}
    if (other_method, other_target, other_body, other_when) != signed_for:
        with pytest.raises(Rejection) as refused:
            _verify(moved, other_method, other_target, other_body)
        assert refused.value.status == 401
