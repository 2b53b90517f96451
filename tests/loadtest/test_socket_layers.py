"""A few seconds of the socket-layer comparison: a candidate serves the bare
cycle and holds idle sockets, and the tool counts them. No timing is asserted:
the figures are benchmarks (docs/performance.md).

Three of the candidates, each ~4 s of the suite's 15-minute budget: Foyer's
own layer, the floor's (picows) and the one Foyer's target is set against (the
websockets library's server). The others are the same tool on other servers;
``python -m loadtest.socket_layers --duration 1`` runs them all."""

from __future__ import annotations

import pytest

from loadtest.socket_layers import CANDIDATES, measure

SMOKED = ("foyer", "picows", "websockets")


def test_the_smoked_candidates_are_candidates() -> None:
    assert set(SMOKED) <= set(CANDIDATES)


@pytest.mark.parametrize("kind", SMOKED)
async def test_every_candidate_serves_the_bare_cycle(kind: str) -> None:
    result = await measure(kind, [40.0], 1.0, 20)
    (step,) = result["rates"]
    assert step["cycles"] == 40  # every cycle went through: connect, frame each way, close
    assert step["server_us_per_cycle"] > 0
    assert result["idle_open"] == 20
