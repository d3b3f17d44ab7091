"""Link conditions and the emulator's per-direction pipe, without packets or root.

`Pipe` is the emulator's real code: time is passed in, so its loss, rate and
delay arithmetic is checked exactly and quickly here; the namespace tests
check the same behaviour end to end with real sockets.
"""

from __future__ import annotations

import random

import pytest

from experiments.testbed.linkemu import Pipe
from experiments.testbed.links import IDEAL, LinkConditions, LinkConfigError
from experiments.testbed.probe import loss_bursts


def pipe(**kw: object) -> Pipe:
    return Pipe("a", "b", LinkConditions(**kw), random.Random(7))


def test_conditions_validate_ranges_and_types() -> None:
    with pytest.raises(LinkConfigError, match="loss"):
        LinkConditions(loss=1.5)
    with pytest.raises(LinkConfigError, match="delay_ms"):
        LinkConditions(delay_ms=-1)
    with pytest.raises(LinkConfigError, match="rate_mbit"):
        LinkConditions(rate_mbit=0)
    with pytest.raises(LinkConfigError, match="number"):
        LinkConditions(delay_ms="20ms")  # type: ignore[arg-type]
    with pytest.raises(LinkConfigError, match="queue_packets"):
        LinkConditions(queue_packets=0)
    with pytest.raises(LinkConfigError, match="too high for mean bursts"):
        LinkConditions(loss=0.8, loss_burst=2)


def test_conditions_from_dict_rejects_unknown_keys() -> None:
    c = LinkConditions.from_dict({"delay_ms": 45, "jitter_ms": 5, "rate_mbit": 7.21})
    assert c == LinkConditions(delay_ms=45, jitter_ms=5, rate_mbit=7.21)
    assert LinkConditions.from_dict(c.to_dict()) == c
    with pytest.raises(LinkConfigError, match=r"unknown link condition.*latency"):
        LinkConditions.from_dict({"latency": 20})
    assert IDEAL.ideal and not c.ideal
    assert c.describe() == "45ms±5ms, 7.21Mbit/s q100"


def test_ideal_pipe_delivers_at_once() -> None:
    p = pipe()
    assert [p.admit(1500, t) for t in (1.0, 1.0, 2.0)] == [1.0, 1.0, 2.0]


def test_delay_is_added_and_fifo_holds_under_jitter() -> None:
    p = pipe(delay_ms=20)
    assert p.admit(100, 1.0) == pytest.approx(1.020)
    p = pipe(delay_ms=20, jitter_ms=15)
    dues = [p.admit(100, i * 0.001) for i in range(2000)]
    assert dues == sorted(dues)  # never reordered by default
    delays = [d - i * 0.001 for i, d in enumerate(dues)]
    assert min(delays) >= 0.005 - 1e-9
    p = pipe(delay_ms=20, jitter_ms=15, reorder=True)
    dues = [p.admit(100, i * 0.001) for i in range(2000)]
    assert dues != sorted(dues)
    delays = [d - i * 0.001 for i, d in enumerate(dues)]
    assert min(delays) >= 0.005 - 1e-9 and max(delays) <= 0.035 + 1e-9
    assert sum(delays) / len(delays) == pytest.approx(0.020, abs=0.001)


def test_rate_serialises_and_drops_tail_when_queue_full() -> None:
    p = pipe(rate_mbit=12, queue_packets=10)  # 1500 B = 1 ms at 12 Mbit/s
    dues = [p.admit(1500, 0.0) for _ in range(15)]
    assert dues[:10] == pytest.approx([0.001 * (i + 1) for i in range(10)])
    assert dues[10:] == [None] * 5 and p.queue_drops == 5
    # Once the queue drains, packets pass again: an idle link starts at once.
    assert p.admit(1500, 0.0105) == pytest.approx(0.0115)
    # Long-run: offered 2x the rate, delivered at the rate.
    p = pipe(rate_mbit=10, queue_packets=50)
    gap = 1500 * 8 / 20e6
    dues = [p.admit(1500, i * gap) for i in range(10000)]
    delivered = [d for d in dues if d is not None]
    rate = (len(delivered) - 1) * 1500 * 8 / (delivered[-1] - delivered[0])
    assert rate == pytest.approx(10e6, rel=0.01)


def test_bernoulli_loss_rate() -> None:
    p = pipe(loss=0.2)
    lost = sum(p.admit(100, 0.0) is None for _ in range(20000))
    assert lost / 20000 == pytest.approx(0.2, abs=0.015)
    assert p.lost == lost and p.packets_in == 20000


def test_gilbert_elliott_loss_keeps_rate_and_makes_bursts() -> None:
    n = 50000
    p = pipe(loss=0.1, loss_burst=5)
    kept = [i for i in range(n) if p.admit(100, 0.0) is not None]
    bursts = loss_bursts(kept, n)
    assert 1 - len(kept) / n == pytest.approx(0.1, abs=0.02)
    assert sum(bursts) / len(bursts) == pytest.approx(5, rel=0.15)
    q = pipe(loss=0.1)
    kept = [i for i in range(n) if q.admit(100, 0.0) is not None]
    independent = loss_bursts(kept, n)
    assert sum(independent) / len(independent) < 1.3  # 1/(1-p) = 1.11


def test_reconfigure_affects_only_later_packets() -> None:
    p = pipe(delay_ms=50)
    first = p.admit(100, 0.0)
    p.configure(LinkConditions(delay_ms=5))
    second = p.admit(100, 0.001)
    assert first == pytest.approx(0.050)
    assert second == pytest.approx(0.050)  # waits behind the first (FIFO), not 0.006
    assert p.admit(100, 0.1) == pytest.approx(0.105)
    p.configure(LinkConditions(loss=1.0))
    assert p.admit(100, 0.2) is None
