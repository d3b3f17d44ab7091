"""Player physics and ray casting against a real flat world (ground top at y=16)."""

from __future__ import annotations

import math
import random

import pytest

from shiftcraft import protocol
from world.blocks import BlockId
from world.generator import FlatGenerator
from world.map import World
from world.physics import (
    EYE_HEIGHT,
    FLY_VERTICAL_SPEED,
    HALF_WIDTH,
    JUMP_APEX,
    MAX_SUBSTEP,
    PLAYER_HEIGHT,
    SWIM_SINK_SPEED,
    WALK_SPEED,
    MoveInput,
    PlayerBody,
    aabb_overlaps_block,
    body_aabb,
    eye_position,
    forward_vector,
    look_vector,
    right_vector,
    step,
)
from world.raycast import raycast

GROUND = 16.0  # FlatGenerator(16): grass at y=15, so feet rest at y=16
IDLE = MoveInput(0.0, 0.0, 0.0, 0.0)
EAST = math.pi / 2  # yaw looking towards +x


@pytest.fixture
def world() -> World:
    return World(FlatGenerator(16))


def run(body: PlayerBody, inp: MoveInput, seconds: float, world: World, dt: float = 0.05):
    for _ in range(round(seconds / dt)):
        body = step(body, inp, dt, world)
    return body


def standing(x: float = 0.5, z: float = 0.5) -> PlayerBody:
    return PlayerBody(x, GROUND, z, 0.0, 0.0, 0.0, on_ground=True)


def wall(world: World, x: int, zs: range, ys: range = range(16, 19)) -> None:
    for z in zs:
        for y in ys:
            world.set_block(x, y, z, BlockId.STONE)


# -- conventions ----------------------------------------------------------------
def test_direction_conventions() -> None:
    assert forward_vector(0.0) == pytest.approx((0.0, 0.0, 1.0))
    assert forward_vector(EAST) == pytest.approx((1.0, 0.0, 0.0))
    assert right_vector(0.0) == pytest.approx((-1.0, 0.0, 0.0))  # right-handed, y up
    assert right_vector(EAST) == pytest.approx((0.0, 0.0, 1.0))
    assert look_vector(0.0, 0.5)[1] > 0.0  # positive pitch looks up
    lx, ly, lz = look_vector(1.0, -0.3)
    assert math.hypot(lx, ly, lz) == pytest.approx(1.0)


def test_forward_and_strafe_follow_the_vectors(world: World) -> None:
    b = run(standing(), MoveInput(1.0, 0.0, EAST, 0.0), 0.5, world)
    assert b.x == pytest.approx(0.5 + WALK_SPEED * 0.5)
    assert b.z == pytest.approx(0.5)
    b = run(standing(), MoveInput(0.0, 1.0, 0.0, 0.0), 0.5, world)
    assert b.x == pytest.approx(0.5 - WALK_SPEED * 0.5)  # right of +z is -x
    # diagonal input is normalised: no faster than straight
    b = run(standing(), MoveInput(1.0, 1.0, 0.0, 0.0), 1.0, world)
    assert math.hypot(b.x - 0.5, b.z - 0.5) == pytest.approx(WALK_SPEED)


def test_input_frame_round_trip() -> None:
    assert (protocol.FLAG_JUMP, protocol.FLAG_SNEAK, protocol.FLAG_FLY, protocol.FLAG_SPRINT) == (
        1,
        2,
        4,
        8,
    )
    inp = MoveInput(0.5, -1.0, 1.25, -0.5, jump=True, fly=True, sprint=True)
    frame = inp.to_frame(7, 0.05)
    assert frame == [7, 0.05, 0.5, -1.0, 1.25, -0.5, 1 | 4 | 8]
    assert MoveInput.from_frame(frame) == inp
    # the frame passes the protocol's own validation
    msg = protocol.from_wire({"type": "input", "frames": [frame]})
    assert MoveInput.from_frame(msg.frames[0]) == inp


# -- gravity, ground, jump ------------------------------------------------------
def test_falling_stops_exactly_on_top(world: World) -> None:
    b = run(PlayerBody(0.5, 30.3, 0.5), IDLE, 3.0, world)
    assert b.y == GROUND  # exactly, not approximately
    assert b.on_ground
    assert b.vy == 0.0
    # standing still stays still and grounded
    b2 = run(b, IDLE, 1.0, world)
    assert (b2.x, b2.y, b2.z, b2.on_ground) == (b.x, GROUND, b.z, True)


def test_walking_off_an_edge_falls(world: World) -> None:
    world.set_block(0, 16, 0, BlockId.STONE)
    b = PlayerBody(0.5, 17.0, 0.5, on_ground=True)
    b = run(b, MoveInput(1.0, 0.0, EAST, 0.0), 1.0, world)
    assert b.y == GROUND and b.on_ground
    assert b.x > 2.0


@pytest.mark.parametrize("dt", [1 / 60, 0.05, 0.1, 0.25])
def test_jump_apex(world: World, dt: float) -> None:
    b = step(standing(), MoveInput(0.0, 0.0, 0.0, 0.0, jump=True), dt, world)
    apex = b.y
    for _ in range(round(2.0 / dt)):
        b = step(b, IDLE, dt, world)
        apex = max(apex, b.y)
    assert apex - GROUND == pytest.approx(JUMP_APEX, abs=0.03)
    assert b.y == GROUND and b.on_ground


def test_jump_only_from_the_ground(world: World) -> None:
    b = PlayerBody(0.5, 25.0, 0.5)
    b2 = step(b, MoveInput(0.0, 0.0, 0.0, 0.0, jump=True), 0.05, world)
    assert b2.vy < 0.0  # no mid-air jump


def test_ceiling_stops_a_jump(world: World) -> None:
    world.set_block(0, 18, 0, BlockId.STONE)  # head room 2 blocks, body 1.8 tall
    b = step(standing(), MoveInput(0.0, 0.0, 0.0, 0.0, jump=True), 0.05, world)
    assert b.y + PLAYER_HEIGHT == pytest.approx(18.0)  # the head stops at the ceiling
    assert b.vy == 0.0
    apex = b.y
    for _ in range(40):
        b = step(b, IDLE, 0.05, world)
        apex = max(apex, b.y)
    assert apex + PLAYER_HEIGHT <= 18.0 + 1e-9
    assert b.y == GROUND and b.on_ground


def test_jump_onto_a_block(world: World) -> None:
    for x in range(2, 12):
        wall(world, x, range(-2, 3), range(16, 17))  # a one-block step up
    b = run(standing(), MoveInput(1.0, 0.0, EAST, 0.0, jump=True), 1.0, world)
    b = run(b, IDLE, 1.0, world)
    assert b.y == 17.0 and b.on_ground and b.x > 2.0


# -- walls ----------------------------------------------------------------------
def test_walking_into_a_wall_stops_at_the_wall(world: World) -> None:
    wall(world, 5, range(-3, 4))
    b = run(standing(), MoveInput(1.0, 0.0, EAST, 0.0), 2.0, world)
    assert b.x == pytest.approx(5.0 - HALF_WIDTH, abs=1e-9)
    assert b.x + HALF_WIDTH <= 5.0 + 1e-9
    assert b.z == pytest.approx(0.5)
    assert b.vx == 0.0
    # and in -x direction
    wall(world, -5, range(-3, 4))
    b = run(standing(), MoveInput(1.0, 0.0, -EAST, 0.0), 2.0, world)
    assert b.x == pytest.approx(-4.0 + HALF_WIDTH, abs=1e-9)


def test_corner_and_sliding(world: World) -> None:
    wall(world, 5, range(-20, 6))  # x wall
    for x in range(-3, 6):
        for y in range(16, 19):
            world.set_block(x, y, 5, BlockId.STONE)  # z wall
    diag = MoveInput(1.0, 0.0, math.pi / 4, 0.0)  # towards +x +z
    b = run(standing(), diag, 3.0, world)
    assert b.x == pytest.approx(5.0 - HALF_WIDTH, abs=1e-9)
    assert b.z == pytest.approx(5.0 - HALF_WIDTH, abs=1e-9)
    # diagonal against one wall slides along it
    b = run(standing(0.5, -2.5), MoveInput(1.0, 0.0, 3 * math.pi / 4, 0.0), 1.5, world)
    assert b.x == pytest.approx(5.0 - HALF_WIDTH, abs=1e-9)
    assert b.z < -6.0


def test_touching_a_wall_does_not_stop_sliding_past_it(world: World) -> None:
    # a body flush with a wall in x walks along z freely (no snagging)
    wall(world, 5, range(-3, 4))
    b = standing(5.0 - HALF_WIDTH, 0.5)
    b2 = run(b, MoveInput(1.0, 0.0, 0.0, 0.0), 0.5, world)
    assert b2.z == pytest.approx(0.5 + WALK_SPEED * 0.5)
    assert b2.x == b.x


def test_stuck_in_a_block_can_walk_out(world: World) -> None:
    world.set_block(0, 16, 0, BlockId.STONE)
    b = run(standing(0.5, 0.5), MoveInput(1.0, 0.0, EAST, 0.0), 1.0, world)
    assert b.x > 2.0


# -- tunnelling -----------------------------------------------------------------
def test_no_tunnelling_through_a_thin_wall(world: World) -> None:
    wall(world, 8, range(-3, 4), range(16, 40))
    b = PlayerBody(0.5, 20.0, 0.5, vx=10_000.0)  # in the air: keeps most of it
    for _ in range(8):
        b = step(b, IDLE, 0.25, world)
    assert b.x <= 8.0 - HALF_WIDTH + 1e-9


def test_no_tunnelling_through_a_thin_floor(world: World) -> None:
    for x in range(-2, 3):
        for z in range(-2, 3):
            world.set_block(x, 60, z, BlockId.GLASS)
    b = PlayerBody(0.5, 120.0, 0.5, vy=-10_000.0)
    for _ in range(20):
        b = step(b, IDLE, 0.25, world)
    assert b.y == 61.0 and b.on_ground


def test_substeps_cover_dt(world: World) -> None:
    # one 0.25 s step equals five 0.05 s steps (the same substeps)
    inp = MoveInput(1.0, 0.3, 0.7, 0.0, jump=True)
    a = step(standing(), inp, 0.25, world)
    b = standing()
    for _ in range(round(0.25 / MAX_SUBSTEP)):
        b = step(b, inp, MAX_SUBSTEP, world)
    assert a == b


# -- flying and swimming --------------------------------------------------------
def test_fly_mode(world: World) -> None:
    hover = MoveInput(0.0, 0.0, 0.0, 0.0, fly=True)
    b = run(PlayerBody(0.5, 30.0, 0.5), hover, 1.0, world)
    assert b.flying and b.y == 30.0  # no gravity
    up = MoveInput(0.0, 0.0, 0.0, 0.0, jump=True, fly=True)
    b = run(b, up, 1.0, world)
    assert b.y == pytest.approx(30.0 + FLY_VERTICAL_SPEED)
    down = MoveInput(0.0, 0.0, 0.0, 0.0, sneak=True, fly=True)
    b = run(b, down, 0.5, world)
    assert b.y == pytest.approx(30.0 + FLY_VERTICAL_SPEED * 0.5)
    b = run(b, down, 5.0, world)
    assert b.y == GROUND and b.on_ground  # flying into the ground stops on it
    # clearing the flag gives gravity back
    b = run(PlayerBody(0.5, 30.0, 0.5, flying=True), IDLE, 2.0, world)
    assert not b.flying and b.y == GROUND


def test_swimming(world: World) -> None:
    for x in range(-3, 4):
        for z in range(-3, 4):
            for y in range(10, 16):
                world.set_block(x, y, z, BlockId.WATER)
    b = run(PlayerBody(0.5, 30.0, 0.5), IDLE, 1.0, world)  # fall in
    b = run(b, IDLE, 0.5, world)
    assert b.y < 16.0 and b.vy >= -SWIM_SINK_SPEED  # sinks slowly
    b = run(b, IDLE, 5.0, world)
    assert b.y == 10.0 and b.on_ground  # rests on the bottom
    b = run(b, MoveInput(0.0, 0.0, 0.0, 0.0, jump=True), 1.5, world)
    assert b.y > 14.0  # jump rises
    # swim to the bank holding jump: climbs out onto the ground
    b = run(b, MoveInput(1.0, 0.0, EAST, 0.0, jump=True), 4.0, world)
    assert b.x > 4.0 and b.y >= GROUND


# -- determinism ----------------------------------------------------------------
def test_determinism(world: World) -> None:
    wall(world, 3, range(-5, 5))
    rng = random.Random(42)
    inputs = [
        (
            MoveInput(
                rng.uniform(-1, 1),
                rng.uniform(-1, 1),
                rng.uniform(-math.pi, math.pi),
                0.0,
                jump=rng.random() < 0.3,
                sneak=rng.random() < 0.1,
                sprint=rng.random() < 0.5,
                fly=rng.random() < 0.05,
            ),
            rng.choice([0.016, 0.05, 0.1, 0.25]),
        )
        for _ in range(300)
    ]

    def replay() -> list[PlayerBody]:
        b = standing()
        out = []
        for inp, dt in inputs:
            nb = step(b, inp, dt, world)
            assert nb is not b
            out.append(nb)
            b = nb
        return out

    first = replay()
    assert first == replay()
    before = standing()
    step(before, inputs[0][0], 0.1, world)
    assert before == standing()  # step never mutates its argument


# -- boxes ----------------------------------------------------------------------
def test_aabb_overlaps_block() -> None:
    b = standing()
    box = body_aabb(b)
    assert box == pytest.approx((0.2, 16.0, 0.2, 0.8, 17.8, 0.8))
    assert not aabb_overlaps_block(box, 0, 15, 0)  # standing on it
    assert aabb_overlaps_block(box, 0, 16, 0)
    assert aabb_overlaps_block(box, 0, 17, 0)
    assert not aabb_overlaps_block(box, 0, 18, 0)
    assert not aabb_overlaps_block(box, 1, 16, 0)
    edge = body_aabb(standing(1.0 - HALF_WIDTH, 0.5))  # flush with x=1
    assert not aabb_overlaps_block(edge, 1, 16, 0)
    straddle = body_aabb(standing(1.0, 1.0))
    for x in (0, 1):
        for z in (0, 1):
            assert aabb_overlaps_block(straddle, x, 17, z)
    assert eye_position(b) == (0.5, GROUND + EYE_HEIGHT, 0.5)


# -- raycast --------------------------------------------------------------------
def test_raycast_down_hits_the_top_face(world: World) -> None:
    eye = eye_position(standing(0.3, 0.7))
    hit = raycast(world, eye, look_vector(0.0, -math.pi / 2), 6.0)
    assert hit is not None
    assert hit.pos == (0, 15, 0)
    assert hit.block == BlockId.GRASS
    assert hit.normal == (0, 1, 0)
    assert hit.adjacent == (0, 16, 0)
    assert hit.distance == pytest.approx(EYE_HEIGHT)


@pytest.mark.parametrize(
    ("direction", "block", "normal"),
    [
        ((1.0, 0.0, 0.0), (4, 17, 0), (-1, 0, 0)),
        ((-1.0, 0.0, 0.0), (-4, 17, 0), (1, 0, 0)),
        ((0.0, 0.0, 1.0), (0, 17, 4), (0, 0, -1)),
        ((0.0, 0.0, -1.0), (0, 17, -4), (0, 0, 1)),
        ((0.0, 1.0, 0.0), (0, 20, 0), (0, -1, 0)),
    ],
)
def test_raycast_faces(world: World, direction, block, normal) -> None:
    world.set_block(*block, BlockId.BRICK)
    origin = (0.5, 17.5, 0.5)
    hit = raycast(world, origin, direction, 10.0)
    assert hit is not None and hit.pos == block and hit.normal == normal
    assert hit.block == BlockId.BRICK
    assert hit.distance == pytest.approx(3.5 if normal[1] == 0 else 2.5)


def test_raycast_diagonal_does_not_skip_voxels(world: World) -> None:
    # a ray through a voxel corner region still finds a block it clips
    world.set_block(2, 17, 1, BlockId.STONE)
    hit = raycast(world, (0.5, 17.5, 0.5), (1.0, 0.0, 0.45), 10.0)
    assert hit is not None and hit.pos == (2, 17, 1)


def test_raycast_misses(world: World) -> None:
    assert raycast(world, (0.5, 17.5, 0.5), (1.0, 0.0, 0.0), 50.0) is None  # open field
    assert raycast(world, (0.5, 17.5, 0.5), (0.0, 1.0, 0.0), 500.0) is None  # sky
    assert raycast(world, (0.5, 17.5, 0.5), (0.0, -1.0, 0.0), 1.0) is None  # too short
    assert raycast(world, (0.5, 17.5, 0.5), (0.0, 0.0, 0.0), 5.0) is None


def test_raycast_fluids(world: World) -> None:
    world.set_block(0, 16, 0, BlockId.WATER)
    down = (0.0, -1.0, 0.0)
    hit = raycast(world, (0.5, 17.5, 0.5), down, 5.0)
    assert hit is not None and hit.pos == (0, 15, 0)  # through the water
    hit = raycast(world, (0.5, 17.5, 0.5), down, 5.0, include_fluids=True)
    assert hit is not None and hit.pos == (0, 16, 0) and hit.block == BlockId.WATER


def test_raycast_from_above_the_world(world: World) -> None:
    hit = raycast(world, (0.5, 200.0, 0.5), (0.0, -1.0, 0.0), 500.0)
    assert hit is not None and hit.pos == (0, 15, 0)
