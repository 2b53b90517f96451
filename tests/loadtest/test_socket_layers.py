"""A few seconds of the socket-layer comparison: each candidate serves the bare
cycle and holds idle sockets, and the tool counts them. No timing is asserted:
the figures are benchmarks (docs/performance.md)."""

from __future__ import annotations

import pytest

from loadtest.socket_layers import CANDIDATES, measure


@pytest.mark.parametrize("kind", CANDIDATES)
async def test_every_candidate_serves_the_bare_cycle(kind: str) -> None:
    result = await measure(kind, [40.0], 1.0, 20)
    (step,) = result["rates"]
    assert step["cycles"] == 40  # every cycle went through: connect, frame each way, close
    assert step["server_us_per_cycle"] > 0
    assert result["idle_open"] == 20
