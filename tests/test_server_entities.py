"""Entity interest and the spliced update encoding (pure, no sockets)."""

from __future__ import annotations

import msgpack
import pytest

from server.entities import EntityTracker
from server.interest import SectionInterest, desired_sections
from server.metrics import ServerStats
from server.ratelimit import TokenBucket
from server.session import Session
from server.wire import encode_update
from shiftcraft import protocol as P
from world.physics import PlayerBody


def player(pid: int, x: float, z: float = 0.0) -> Session:
    s = Session(
        ws=None,  # type: ignore[arg-type]  # never sends in these tests
        stats=ServerStats(),
        out_limit=8,
        msg_bucket=TokenBucket(1, 1),
        flood_bucket=TokenBucket(1, 1),
        player_id=pid,
        name=f"p{pid}",
        role="bot",
    )
    s.body = PlayerBody(x, 64.0, z)
    return s


def moved_ids(tracker: EntityTracker, s: Session) -> list[int]:
    return sorted(msgpack.unpackb(m)[0] for m in tracker.view_for(s).moves)


def test_spawn_moves_by_distance_and_gone():
    me, near, mid, far, out = (
        player(1, 0),
        player(2, 10),
        player(3, 24),
        player(4, 50),
        player(5, 100),
    )
    everyone = [me, near, mid, far, out]
    t = EntityTracker(distance=64, hysteresis=8, near=16)
    t.begin(everyone, tick=0)
    v = t.view_for(me)
    assert sorted(e[0] for e in v.spawn) == [2, 3, 4]  # 100 blocks is out of sight
    assert v.spawn[0][1].startswith("p") and v.moves == [] and v.gone == []

    # Everyone moves every tick; near ones are sent every tick, mid every 2nd, far every 4th.
    sent: dict[int, int] = {2: 0, 3: 0, 4: 0, 5: 0}
    for tick in range(1, 9):
        for s in everyone[1:]:
            s.body.z += 0.1
        t.begin(everyone, tick)
        for pid in moved_ids(t, me):
            sent[pid] += 1
    assert sent == {2: 8, 3: 4, 4: 2, 5: 0}

    # Hysteresis: 68 blocks is beyond 64 but within 64 + 8: still visible.
    far.body.x = 68.0
    t.begin(everyone, 9)
    assert t.view_for(me).gone == []
    far.body.x = 80.0
    t.begin(everyone, 10)
    assert t.view_for(me).gone == [4]
    # A player who leaves is gone for whoever saw it.
    t.begin([me, mid, far, out], 11)
    assert t.view_for(me).gone == [2]
    # A newcomer sees everyone in range at once, and is seen.
    new = player(6, 5)
    t.begin([me, mid, far, out, new], 12)
    assert sorted(e[0] for e in t.view_for(new).spawn) == [1, 3]
    assert [e[0] for e in t.view_for(me).spawn] == [6]


def test_render_node_sees_around_its_centres():
    node = player(9, 0)
    node.body = None
    node.view_centres = [(500.0, 64.0, 0.0)]
    a, b = player(1, 0), player(2, 510)
    t = EntityTracker(distance=64, hysteresis=8)
    t.begin([a, b], 0)
    assert [e[0] for e in t.view_for(node).spawn] == [2]
    b.body.x = 600.0
    t.begin([a, b], 1)
    assert t.view_for(node).gone == [2]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 300, 70000])
def test_spliced_update_decodes_like_the_plain_encoding(n):
    moves = [[i, 1.5 * i, 64.0, -2.25, 0.5, -0.1] for i in range(n)]
    msg = P.Update(tick=7, ack=3, pos=(1.0, 2.0, 3.0), blocks=[[1, 2, 3, 4]], gone=[9])
    spliced = encode_update(msg, [msgpack.packb(m) for m in moves])
    msg.entities = moves
    decoded = P.decode(spliced, P.MAX_SERVER_FRAME_BYTES)
    assert decoded == P.decode(P.encode(msg), P.MAX_SERVER_FRAME_BYTES)
    assert len(spliced) == len(P.encode(msg))


def test_section_interest_queue_and_unload():
    keys = desired_sections([(0, 4, 0)], 2.0)
    assert tuple(keys[0]) == (0, 4, 0) and len(keys) == 13 * 8
    two = desired_sections([(0, 4, 0), (1, 4, 0)], 2.0)
    assert len({tuple(k) for k in two.tolist()}) == len(two)  # the union has no duplicates
    i = SectionInterest(hysteresis=1.5)
    i.retarget([(0, 4, 0)], 2.0)
    for key in i.queue:
        i.mark_sent(key)
    assert i.retarget([(0, 4, 0)], 2.0) is False  # same centre: nothing to do
    i.retarget([(3, 4, 0)], 2.0)
    # Columns more than 2 + 1.5 away from x=3 go: x <= -1 (distance >= 4 ... and the
    # corners of x=0 at |z|=2: sqrt(9 + 4) = 3.6).
    gone = {(k[0], k[2]) for k in i.unload}
    assert gone == {(-2, 0), (-1, -1), (-1, 0), (-1, 1), (0, -2), (0, 2)}
    assert all(k not in i.sent for k in i.unload)
    assert i.queue and all(k not in i.sent for k in i.queue)
