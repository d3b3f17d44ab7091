"""When to send input to a render node: just before its next frame tick.

A render node samples a session's camera once per frame, at ticks 1/fps
apart on one clock (`renderer.node.session`), and applies every input
message on arrival. An input that arrives between two ticks is first seen
at the next one, so sending each input frame the moment the game makes it
(60 Hz or more) buys nothing over one message per tick that carries every
frame made since the last: the camera at each tick is the same. What it
does cost is messages — each one a data-channel packet, a DTLS record and,
in aiortc, an SCTP acknowledgement back, in Python on both ends.

`TickPacer` learns the node's tick phase from the ``tick`` field of its
frame stamps (the node's wall clock, brought to ours with the ping clock
offset) and says when the message for the next tick should leave: ``lead``
seconds before it (half the round trip plus a margin for the node's event
loop waking late). Until it has heard a tick, or when the stamps stop, it
says "now", which is the unpaced behaviour.
"""

from __future__ import annotations

import math

# Stamps older than this no longer tell the phase (the stream stalled or was
# reconfigured): send at once until a fresh one comes.
STALE_S = 1.0
# Sent this close to the slot, or later, the message goes at once.
NOW_S = 0.002
MARGIN_S = 0.004  # the node's event loop may sample the camera this late after its tick


class TickPacer:
    """The node's tick clock, as seen from this client (see the module docstring)."""

    def __init__(self) -> None:
        self.tick: float | None = None  # a recent node tick, our wall clock
        self.interval = 0.0
        self.heard_at = -math.inf  # our wall clock when that stamp came

    def observe(self, tick_local: float, interval: float, now: float) -> None:
        """A frame stamp's ``tick``, already on our wall clock; ``interval``: 1/fps."""
        if tick_local <= 0.0 or not 0.0 < interval <= 1.0:
            return
        self.tick = tick_local
        self.interval = interval
        self.heard_at = now

    def send_at(self, now: float, lead: float) -> float:
        """When (our wall clock, >= ``now``) to send input made ``now`` so it
        is in before the node's next tick; ``now`` itself when unpaced."""
        if self.tick is None or now - self.heard_at > STALE_S:
            return now
        interval = self.interval
        # The next tick at least ``lead`` away: a message sent then arrives in time.
        k = math.floor((now + lead - self.tick) / interval) + 1
        slot = self.tick + k * interval - lead
        if slot - now <= NOW_S:
            return now
        return slot

    @staticmethod
    def lead(rtt_s: float | None) -> float:
        """How long before a tick the message should leave: half the round
        trip (the one-way delay) plus `MARGIN_S`."""
        return (rtt_s or 0.0) / 2.0 + MARGIN_S
