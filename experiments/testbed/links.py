"""Link conditions: what one direction of an emulated link does to packets.

A `LinkConditions` is a plain, immutable value: the scenario runner builds it
from YAML, the `Testbed` sends it (as a dict) to the link-emulator process,
and the report prints it. Units are in the field names so a scenario file
cannot mix up milliseconds and seconds or bits and bytes.

Semantics (one direction; `Testbed.set_link` sets both unless told otherwise):

* ``delay_ms``: fixed one-way delay. A 20 ms link gives a 40 ms RTT.
* ``jitter_ms``: each packet's delay is drawn uniformly from
  ``delay ± jitter`` (like netem without a distribution table), clamped at 0.
  Packets are not reordered by default: a packet that drew a short delay
  waits for the one before it, as on a real FIFO path. ``reorder=True``
  lets them overtake.
* ``loss``: long-run fraction of packets dropped, 0-1.
* ``loss_burst``: mean length of a loss burst, in packets. ``<= 1`` means
  independent (Bernoulli) loss; above 1 the simple Gilbert-Elliott model is
  used (a Bad state that drops everything, left with probability
  ``1/loss_burst``), tuned so the long-run loss is still ``loss``.
* ``rate_mbit``: link rate in Mbit/s of IP packets (headers included), or
  ``None`` for unlimited. Each packet is held for its serialisation time
  behind the packets queued before it.
* ``queue_packets``: packets that may wait for the rate limiter; one more is
  dropped (drop-tail). Only used when ``rate_mbit`` is set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


class LinkConfigError(ValueError):
    """A link condition is out of range or of the wrong type."""


@dataclass(frozen=True)
class LinkConditions:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    loss_burst: float = 1.0
    rate_mbit: float | None = None
    queue_packets: int = 100
    reorder: bool = False

    def __post_init__(self) -> None:
        def number(name: str, value: Any, lo: float, hi: float = math.inf) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LinkConfigError(f"{name} must be a number, got {value!r}")
            if not (lo <= value <= hi) or math.isnan(value):
                raise LinkConfigError(f"{name} must be in [{lo}, {hi}], got {value!r}")

        number("delay_ms", self.delay_ms, 0.0, 60_000.0)
        number("jitter_ms", self.jitter_ms, 0.0, 60_000.0)
        number("loss", self.loss, 0.0, 1.0)
        number("loss_burst", self.loss_burst, 0.0, 1e6)
        if self.rate_mbit is not None:
            number("rate_mbit", self.rate_mbit, 0.001, 100_000.0)
        if (
            isinstance(self.queue_packets, bool)
            or not isinstance(self.queue_packets, int)
            or not 1 <= self.queue_packets <= 1_000_000
        ):
            raise LinkConfigError(
                f"queue_packets must be an integer in [1, 1000000], got {self.queue_packets!r}"
            )
        if (
            0 < self.loss < 1
            and self.loss_burst > 1
            and self.loss > self.loss_burst / (self.loss_burst + 1)
        ):
            # Gilbert-Elliott: P(good->bad) = loss / (1 - loss) / burst must stay <= 1.
            raise LinkConfigError(
                f"loss {self.loss:g} is too high for mean bursts of {self.loss_burst:g} packets "
                f"(at most {self.loss_burst / (self.loss_burst + 1):.3g})"
            )
        if not isinstance(self.reorder, bool):
            raise LinkConfigError(f"reorder must be true or false, got {self.reorder!r}")

    @property
    def ideal(self) -> bool:
        """True when the link does nothing (packets are forwarded at once)."""
        return (
            self.delay_ms == 0 and self.jitter_ms == 0 and self.loss == 0 and self.rate_mbit is None
        )

    @property
    def rtt_ms(self) -> float:
        """RTT if both directions had these conditions (mean, ignoring rate)."""
        return 2 * self.delay_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkConditions:
        """Build from a dict (scenario YAML, control messages); unknown keys are errors."""
        if not isinstance(data, dict):
            raise LinkConfigError(f"link conditions must be a mapping, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinkConfigError(
                f"unknown link condition(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def describe(self) -> str:
        """Short human-readable form for logs and reports."""
        if self.ideal:
            return "ideal"
        parts = [f"{self.delay_ms:g}ms"]
        if self.jitter_ms:
            parts[-1] += f"±{self.jitter_ms:g}ms"
        if self.loss:
            burst = f" burst {self.loss_burst:g}" if self.loss_burst > 1 else ""
            parts.append(f"loss {self.loss * 100:g}%{burst}")
        if self.rate_mbit is not None:
            parts.append(f"{self.rate_mbit:g}Mbit/s q{self.queue_packets}")
        return ", ".join(parts)


IDEAL = LinkConditions()
