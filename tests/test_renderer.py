"""The renderer, pixel by pixel, on tiny scenes (the real numba kernel).

Camera conventions come from `world.physics` (yaw 0 looks +z, right is -x),
so a block placed in front of the camera must land where `Camera.project`
says, and the frame must change exactly where the scene does.
"""

from __future__ import annotations

import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from renderer import (
    Avatar,
    Camera,
    Renderer,
    RenderSettings,
    WorldView,
    kernel_threadsafe,
    warm_up,
)
from renderer.png import encode_png, save_png
from renderer.renderer import face_shades
from renderer.textures import LODS, build_atlas
from world.blocks import BLOCKS, BlockId
from world.map import World
from world.physics import EYE_HEIGHT, PlayerBody, look_vector
from world.terrain import TerrainGenerator

W, H = 96, 64
EYE = (0.5, 64.5, 0.5)  # the camera's eye in every tiny scene, looking +z


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(W, H, view_distance=96)


def scene(*blocks: tuple[int, int, int, int]) -> WorldView:
    view = WorldView(radius=112)
    for x, y, z, b in blocks:
        view.set_block(x, y, z, int(b))
    return view


def camera(yaw: float = 0.0, pitch: float = 0.0, pos=EYE) -> Camera:
    return Camera(*pos, yaw=yaw, pitch=pitch)


def shot(renderer: Renderer, view: WorldView, cam: Camera | None = None, **kw) -> np.ndarray:
    return renderer.render(view, cam or camera(), **kw).copy()


def rgb(frame: np.ndarray, px: int, py: int) -> np.ndarray:
    return frame[py, px].astype(np.int64)


def is_sky(c: np.ndarray) -> bool:
    return bool(c[2] > c[0] + 20 and c[2] > 150)


def stone_range(face: int, dist_fog: float = 0.0) -> tuple[float, float]:
    """Channel range of a lit, un-occluded stone face (texture noise span)."""
    atlas, slots = build_atlas()
    tex = atlas[0, slots[BlockId.STONE], 1, :, :, 0]
    shade = face_shades(RenderSettings().sun, RenderSettings().ambient)[face]
    return float(tex.min()) * shade * 255 - 2, float(tex.max()) * shade * 255 + 2


# -- geometry -------------------------------------------------------------------
def test_camera_matches_physics_conventions() -> None:
    cam = Camera(0.0, 0.0, 0.0, yaw=0.7, pitch=-0.2)
    fwd, right, up = cam.basis()
    assert np.allclose(fwd, look_vector(0.7, -0.2))
    assert np.allclose(cam.ray(W / 2 - 0.5, H / 2 - 0.5, W, H), fwd)
    assert np.allclose(np.cross(fwd, up), -np.array(right)) or np.allclose(np.cross(right, fwd), up)
    # right is screen-right: a point to the right projects right of centre
    px, _ = cam.project(tuple(np.array(fwd) * 5 + np.array(right)), W, H)
    assert px > W / 2
    body = PlayerBody(1.0, 60.0, 2.0)
    assert Camera.from_body(body, 0.1, 0.2).position == (1.0, 60.0 + EYE_HEIGHT, 2.0)


def test_single_stone_block_lands_on_its_pixels(renderer: Renderer) -> None:
    # a stone block 4.5 blocks ahead, eye level: its -z face faces the camera
    view = scene((0, 64, 5, BlockId.STONE))
    frame = shot(renderer, view)
    cam = camera()
    corners = [cam.project((x, y, 5.0), W, H) for x in (0.0, 1.0) for y in (64.0, 65.0)]
    xs = [c[0] for c in corners]
    ys = [c[1] for c in corners]
    lo, hi = stone_range(face=5)
    for py in range(H):
        for px in range(W):
            cx, cy = px + 0.5, py + 0.5
            inside = min(xs) + 1 < cx < max(xs) - 1 and min(ys) + 1 < cy < max(ys) - 1
            outside = not (min(xs) - 1 < cx < max(xs) + 1 and min(ys) - 1 < cy < max(ys) + 1)
            c = rgb(frame, px, py)
            if inside:  # stone: grey, shaded like a -z face
                assert abs(c[0] - c[2]) < 6 and lo <= c[0] <= hi, (px, py, c)
            elif outside:
                assert is_sky(c), (px, py, c)
    # the centre is stone, the corners sky
    assert not is_sky(rgb(frame, W // 2, H // 2))
    for px, py in ((0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1)):
        assert is_sky(rgb(frame, px, py))


def test_side_faces_are_shaded_differently(renderer: Renderer) -> None:
    # look at the block's corner diagonally: two side faces, different light
    view = scene((0, 64, 0, BlockId.SNOW))
    cam = Camera(3.5, 64.5, -2.5, yaw=-math.atan2(3.0, 3.0), pitch=0.0)
    frame = shot(renderer, view, cam)
    left = rgb(frame, W // 2 - 6, H // 2)
    right = rgb(frame, W // 2 + 6, H // 2)
    assert not is_sky(left) and not is_sky(right)
    assert abs(int(left.sum()) - int(right.sum())) > 30


def test_edit_changes_the_frame(renderer: Renderer) -> None:
    view = scene()
    empty = shot(renderer, view)
    assert view.set_block(0, 64, 5, BlockId.STONE)
    with_block = shot(renderer, view)
    assert (with_block != empty).any(axis=2).sum() > 50
    view.set_block(0, 64, 5, BlockId.BRICK)  # a different block: different pixels
    brick = shot(renderer, view)
    assert (brick != with_block).any()
    view.set_block(0, 64, 5, BlockId.AIR)
    assert np.array_equal(shot(renderer, view), empty)


# -- sky, fog, light -------------------------------------------------------------
def test_sky_gradient_where_nothing_is_hit(renderer: Renderer) -> None:
    frame = shot(renderer, scene(), camera(pitch=0.3))
    top = frame[0].astype(np.int64).mean(axis=0)
    horizon_row = int(camera(pitch=0.3).project((0.5, 64.5, 1000.0), W, H)[1])
    horizon = frame[horizon_row].astype(np.int64).mean(axis=0)
    # bluer overhead: more blue than red, by more than at the horizon
    assert top[2] - top[0] > horizon[2] - horizon[0] + 20
    assert horizon.sum() > top.sum()  # the horizon is paler
    assert is_sky(top) and np.all(frame[:, :, 2] >= frame[:, :, 0])


def test_fog_fades_distant_blocks_to_the_sky(renderer: Renderer) -> None:
    def centre(dist: int) -> np.ndarray:
        view = WorldView(radius=112)
        # a wall big enough to fill the centre pixel at any distance
        view.fill(-6, 60, dist, 6, 69, dist, BlockId.STONE)
        return rgb(shot(renderer, view), W // 2, H // 2)

    sky = rgb(shot(renderer, scene()), W // 2, H // 2)
    near, mid, far = centre(8), centre(60), centre(90)
    d = [float(np.abs(c - sky).sum()) for c in (near, mid, far)]
    assert d[0] > d[1] > d[2]
    assert d[2] < 0.25 * d[0]
    # beyond the view distance: nothing but sky
    assert np.array_equal(centre(100), sky)


def test_ambient_occlusion_darkens_corners(renderer: Renderer) -> None:
    # looking down at a floor with a wall on one side: the floor next to the
    # wall is darker than the open floor
    floor = [(x, 60, z, BlockId.STONE) for x in range(-4, 5) for z in range(-4, 5)]
    wall = [(-1, 61, z, BlockId.STONE) for z in range(-4, 5)]
    plain = shot(renderer, scene(*floor), Camera(0.5, 64.5, 0.5, 0.0, -math.pi / 2 + 1e-3))
    shaded = shot(renderer, scene(*floor, *wall), Camera(0.5, 64.5, 0.5, 0.0, -math.pi / 2 + 1e-3))
    cam = Camera(0.5, 64.5, 0.5, 0.0, -math.pi / 2 + 1e-3)
    px, py = (int(v) for v in cam.project((-0.0 + 0.05, 61.0, 0.5), W, H))  # floor by the wall
    assert shaded[py, px].sum() < plain[py, px].sum() - 20


# -- transparency ----------------------------------------------------------------
def test_water_is_see_through_and_tinted(renderer: Renderer) -> None:
    down = Camera(0.5, 66.0, 0.5, 0.0, -math.pi / 2 + 1e-3)

    def pool(bottom: int, water: bool) -> np.ndarray:
        blocks = [(0, 60, 0, bottom)]
        if water:
            blocks += [(0, y, 0, BlockId.WATER) for y in (61, 62, 63)]
        return rgb(shot(renderer, scene(*blocks), down), W // 2, H // 2)

    brick_dry, brick_wet = pool(BlockId.BRICK, False), pool(BlockId.BRICK, True)
    snow_wet = pool(BlockId.SNOW, True)
    assert not np.array_equal(brick_wet, snow_wet)  # the bottom shows through
    assert np.abs(brick_wet - snow_wet).sum() > 40
    # tinted: bluer than the dry brick
    assert brick_wet[2] - brick_wet[0] > brick_dry[2] - brick_dry[0] + 20


def test_looking_out_from_under_water(renderer: Renderer) -> None:
    view = scene(*[(x, y, z, BlockId.WATER) for x in (-1, 0, 1) for y in (64, 65) for z in (0, 1)])
    frame = shot(renderer, view)
    c = rgb(frame, W // 2, H // 2)
    sky = rgb(shot(renderer, scene()), W // 2, H // 2)
    assert not np.array_equal(c, sky) and c[2] > c[0]


def test_glass_is_transparent(renderer: Renderer) -> None:
    glass = (0, 64, 3, BlockId.GLASS)
    behind = (0, 64, 6, BlockId.BRICK)
    only_brick = rgb(shot(renderer, scene(behind)), W // 2, H // 2)
    through = rgb(shot(renderer, scene(glass, behind)), W // 2, H // 2)
    only_glass = rgb(shot(renderer, scene(glass)), W // 2, H // 2)
    assert np.abs(through - only_brick).sum() < 120  # mostly the brick, lightly tinted
    assert np.abs(through - only_glass).sum() > 60  # and not just glass over sky
    assert not np.array_equal(through, only_brick)


def test_leaves_have_holes(renderer: Renderer) -> None:
    leaves = [(x, y, 3, BlockId.LEAVES) for x in (-1, 0, 1) for y in (63, 64, 65)]
    wall = [(x, y, 8, BlockId.BRICK) for x in range(-4, 5) for y in range(60, 70)]
    with_wall = shot(renderer, scene(*leaves, *wall))
    without = shot(renderer, scene(*leaves))
    centre = (slice(H // 2 - 8, H // 2 + 8), slice(W // 2 - 8, W // 2 + 8))
    differs = (with_wall[centre] != without[centre]).any(axis=2)
    # some pixels see through the holes to the wall, most are leaves
    assert 0.05 < differs.mean() < 0.6


# -- avatars, target -------------------------------------------------------------
def test_avatar_box_is_drawn(renderer: Renderer) -> None:
    view = scene()
    red = (0.9, 0.1, 0.1)
    frame = shot(renderer, view, avatars=[Avatar(0.5, 63.5, 4.0, math.pi, red)])
    c = rgb(frame, W // 2, H // 2 + 6)  # the body, below the eye line
    assert c[0] > 2 * c[1] and c[0] > 2 * c[2] and c[0] > 100
    assert np.array_equal(shot(renderer, view), shot(renderer, view, avatars=()))
    # a plain (x, y, z, yaw) tuple works too, with a palette colour
    frame2 = shot(renderer, view, avatars=[(0.5, 63.5, 4.0, 0.0)])
    assert not is_sky(rgb(frame2, W // 2, H // 2 + 6))


def test_avatar_hides_blocks_behind_and_is_hidden_by_blocks_in_front(renderer: Renderer) -> None:
    wall = [(x, y, 8, BlockId.STONE) for x in range(-3, 4) for y in range(62, 68)]
    av = [Avatar(0.5, 63.5, 5.0, 0.0, (0.1, 0.9, 0.1))]
    c = rgb(shot(renderer, scene(*wall), avatars=av), W // 2, H // 2 + 6)
    assert c[1] > c[0] + 40
    in_front = [(x, y, 3, BlockId.STONE) for x in range(-3, 4) for y in range(62, 68)]
    c = rgb(shot(renderer, scene(*in_front), avatars=av), W // 2, H // 2 + 6)
    assert abs(c[1] - c[0]) < 10


def test_avatar_rectangles_hold_every_pixel_whose_ray_meets_the_box() -> None:
    """The kernel tests a pixel against an avatar only inside the box's
    screen rectangle (`raycaster._avatar_rects`): the rectangle must hold
    every pixel whose ray meets the box, wherever the box is — far, near,
    half off the frame, through the eye's plane, behind it."""
    from renderer import raycaster as rc

    rng = np.random.default_rng(7)
    w, h = 160, 90
    r = Renderer(w, h, view_distance=96)
    view = scene()
    ys, xs = np.mgrid[0:h, 0:w]
    culled = 0
    for _ in range(60):
        cam = camera(rng.uniform(-math.pi, math.pi), rng.uniform(-1.2, 1.2))
        fwd = np.array(cam.basis()[0])
        eye = np.array([cam.x, cam.y, cam.z])
        avatars = []
        for dist in (rng.uniform(1.5, 60.0), rng.uniform(-0.4, 0.8), -3.0):
            side = rng.uniform(-1.0, 1.0, 3) * (0.3 + abs(dist))
            x, y, z = eye + dist * fwd + side
            avatars.append((x, y - 1.0, z, 0.0))
        r.render(view, cam, avatars=avatars)
        fwd_, right, up = (np.array(v) for v in cam.basis())
        th, tv = cam.tan_half_fov(w, h)
        sx = (2 * (xs + 0.5) / w - 1) * th
        sy = (1 - 2 * (ys + 0.5) / h) * tv
        d = fwd_ + sx[..., None] * right + sy[..., None] * up
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(len(avatars)):
                lo = r._avatars[i, rc.A_MIN : rc.A_MIN + 3] - eye
                hi = r._avatars[i, rc.A_MAX : rc.A_MAX + 3] - eye
                ta, tb = lo / d, hi / d
                tn = np.minimum(ta, tb).max(axis=-1)
                tf = np.maximum(ta, tb).min(axis=-1)
                hit = (tn <= tf) & (tn > 0.0)
                x0, x1, y0, y1 = r._avatars[i, rc.A_RECT : rc.A_RECT + 4]
                inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
                assert not (hit & ~inside).any(), (i, avatars[i], (x0, x1, y0, y1))
                culled += int((~inside).sum())
    assert culled > 0.5 * 60 * 3 * w * h  # most pixels skip most boxes


def test_target_block_is_outlined(renderer: Renderer) -> None:
    view = scene((0, 64, 5, BlockId.SNOW))
    plain = shot(renderer, view)
    outlined = shot(renderer, view, target=(0, 64, 5))
    cam = camera()
    ex, ey = cam.project((0.5, 65.0, 5.0), W, H)  # middle of the top edge
    top_edge = (int(ey) + 1, int(ex))  # the first pixel row below it: on the block
    assert outlined[top_edge].sum() < plain[top_edge].sum() - 200
    assert np.array_equal(outlined[H // 2, W // 2], plain[H // 2, W // 2])  # face centre untouched
    assert np.array_equal(shot(renderer, view, target=(9, 9, 9)), plain)  # not in view: no change


# -- determinism, buffers, start-up ----------------------------------------------
def test_same_scene_renders_identically(renderer: Renderer) -> None:
    view = scene((0, 64, 5, BlockId.TNT), (1, 64, 6, BlockId.LEAVES), (0, 63, 4, BlockId.WATER))
    a = shot(renderer, view, avatars=[(2.0, 63.0, 7.0, 1.0)], target=(0, 64, 5))
    b = shot(renderer, view, avatars=[(2.0, 63.0, 7.0, 1.0)], target=(0, 64, 5))
    c = Renderer(W, H).render(view, camera(), avatars=[(2.0, 63.0, 7.0, 1.0)], target=(0, 64, 5))
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_output_buffer_is_reused(renderer: Renderer) -> None:
    view = scene((0, 64, 5, BlockId.STONE))
    first = renderer.render(view, camera())
    assert renderer.render(view, camera()) is first is renderer.frame
    out = np.zeros((H, W, 3), dtype=np.uint8)
    assert renderer.render(view, camera(), out=out) is out
    assert np.array_equal(out, first)
    with pytest.raises(ValueError):
        renderer.render(view, camera(), out=np.zeros((H, W + 1, 3), dtype=np.uint8))


def test_beam_prepass_is_exact() -> None:
    """The tile pre-pass only skips air: frames are identical without it."""
    gen = TerrainGenerator(99)
    world = World(gen)
    x, y, z = gen.spawn_point()
    view = WorldView.from_world(world, (x, z), radius=112)
    on, off = Renderer(160, 90, beams=True), Renderer(160, 90, beams=False)
    assert on.tile > 1 and off.tile == 0
    for yaw, pitch in ((0.0, -0.1), (2.0, 0.2), (4.0, -0.6)):
        cam = Camera(x, y + EYE_HEIGHT, z, yaw, pitch)
        assert np.array_equal(on.render(view, cam), off.render(view, cam))


def test_spawn_screenshot_shows_terrain(tmp_path) -> None:
    gen = TerrainGenerator(1234)
    world = World(gen)
    x, y, z = gen.spawn_point()
    view = WorldView.from_world(world, (x, z), radius=112)
    r = Renderer(320, 180)
    frame = r.render(view, Camera(x, y + EYE_HEIGHT, z, 0.0, -0.15))
    path = save_png(tmp_path / "spawn.png", frame)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sky = np.array([is_sky(c) for c in frame.reshape(-1, 3).astype(np.int64)])
    assert 0.1 < sky.mean() < 0.9  # both sky and ground
    assert frame.reshape(-1, 3).std(axis=0).min() > 10  # not a flat colour
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 500  # textured


def test_unloaded_sections_render_as_sky(renderer: Renderer) -> None:
    frame = shot(renderer, scene(), camera(pitch=-0.5))
    assert all(is_sky(c) for c in frame.reshape(-1, 3).astype(np.int64))
    # a camera outside the view's window sees nothing of it
    view = scene((0, 64, 5, BlockId.STONE))
    far = Camera(5000.5, 64.5, 0.5)
    assert all(is_sky(c) for c in shot(renderer, view, far).reshape(-1, 3).astype(np.int64))


def test_textures_are_procedural_and_deterministic() -> None:
    a1, s1 = build_atlas()
    a2, s2 = build_atlas()
    assert np.array_equal(a1, a2) and np.array_equal(s1, s2)
    assert a1.shape[0] == LODS and a1.shape[3:] == (16, 16, 4)
    grass = a1[0, s1[BlockId.GRASS]]
    assert not np.array_equal(grass[0], grass[1])  # top and side differ
    assert not np.array_equal(grass[1], grass[2])  # side and bottom differ
    assert (a1[0, s1[BlockId.LEAVES], 1, :, :, 3] == 0).any()  # leaves have holes
    assert (a1[0, s1[BlockId.STONE], :, :, :, 3] == 1).all()  # stone has none
    wood = a1[0, s1[BlockId.WOOD]]
    assert not np.array_equal(wood[0], wood[1])  # rings on top, bark on the side
    assert s1[BlockId.WATER] != 0 and s1[200] == s1.max()  # unknown ids: "missing"
    for b in BLOCKS:
        if b.id != BlockId.AIR:
            assert a1[0, s1[b.id], :, :, :, :3].std() > 0.005, b.name


def test_png_encoding_round_trips() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = encode_png(frame)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(5, 1 + 7 * 3)
    assert (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:].reshape(5, 7, 3), frame)


def test_warm_up_reports_progress() -> None:
    lines: list[str] = []
    seconds = warm_up(lines.append)
    assert lines[0] == "compiling renderer (first start only)..."
    assert lines[-1].startswith("renderer ready") and seconds >= 0


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int64) - b.astype(np.int64)).max(axis=2)


def test_subsampling_matches_the_full_trace_on_terrain() -> None:
    """Pixels shaded from their traced neighbours' shared face (and water
    surface) equal a full trace but for rare edge pixels where a block
    pokes between the traced rays (and float rounding at texel borders)."""
    gen = TerrainGenerator(1234)
    world = World(gen)
    x, y, z = gen.spawn_point()
    view = WorldView.from_world(world, (x, z), radius=112)
    sub, full = Renderer(320, 180, subsample=True), Renderer(320, 180, subsample=False)
    reused = []
    for yaw, pitch in ((0.0, -0.15), (1.5, -0.05), (3.0, -0.5), (4.5, 0.1)):
        cam = Camera(x, y + EYE_HEIGHT, z, yaw, pitch)
        a = sub.render(view, cam).copy()
        b = full.render(view, cam)
        d = _diff(a, b)
        assert (d > 8).mean() < 0.003, (yaw, pitch, (d > 8).mean())
        assert d.mean() < 0.3
        reused.append((sub._keys >= 0).mean())
    assert max(reused) > 0.2  # the shortcut did run


def test_subsampling_on_tiny_scenes_with_water_leaves_avatars_and_outline() -> None:
    """Every case `_reuse` must refuse or reproduce: a stone wall behind a
    pond, leaves with holes, an avatar and an outlined block in front."""
    wall = [(x, y, 12, BlockId.STONE) for x in range(-6, 7) for y in range(58, 70)]
    floor = [(x, 62, z, BlockId.SAND) for x in range(-6, 7) for z in range(2, 12)]
    pond = [(x, 63, z, BlockId.WATER) for x in range(-3, 4) for z in range(4, 10)]
    leaves = [(x, 66, 8, BlockId.LEAVES) for x in range(-2, 3)]
    view = scene(*wall, *floor, *pond, *leaves)
    sub, full = Renderer(W, H, subsample=True), Renderer(W, H, subsample=False)
    cam = camera(pitch=-0.35, pos=(0.5, 66.5, 0.5))
    kw = dict(avatars=[(1.5, 63.0, 9.5, 0.0)], target=(0, 64, 12))
    a = sub.render(view, cam, **kw).copy()
    b = full.render(view, cam, **kw)
    assert (sub._keys >= 0).mean() > 0.3
    assert _diff(a, b).max() <= 2, np.argwhere(_diff(a, b) > 2)[:10]


def test_subsampling_through_leaf_holes() -> None:
    """A canopy close up (a texel a pixel or more, a quarter of them holes):
    rays through a hole record the leaf face they met first, pixels around
    them are shaded from that face where their own texel is solid, and the
    frame is the full trace's."""
    from renderer import raycaster as rc

    canopy = [
        (x, y, z, BlockId.LEAVES) for x in range(-4, 5) for y in range(62, 68) for z in (5, 6)
    ]
    wall = [(x, y, 10, BlockId.BRICK) for x in range(-8, 9) for y in range(58, 72)]
    view = scene(*canopy, *wall)
    sub, full = Renderer(160, 90, subsample=True), Renderer(160, 90, subsample=False)
    for yaw in (0.0, 0.3):
        cam = camera(yaw=yaw, pitch=-0.05)
        a = sub.render(view, cam).copy()
        b = full.render(view, cam)
        keys = sub._keys
        holes = (keys >= 0) & ((keys & rc.KEY_HOLE) != 0)
        assert 0.05 < holes.mean() < 0.5  # traced through holes, marked
        assert _diff(a, b).max() <= 2, (yaw, np.argwhere(_diff(a, b) > 2)[:10])


def test_subsampled_frame_follows_an_edit() -> None:
    floor = [(x, 62, z, BlockId.GRASS) for x in range(-8, 9) for z in range(1, 20)]
    view = scene(*floor)
    sub, full = Renderer(W, H, subsample=True), Renderer(W, H, subsample=False)
    cam = camera(pitch=-0.4)
    before = sub.render(view, cam).copy()
    view.set_block(0, 63, 6, int(BlockId.STONE))
    after = sub.render(view, cam).copy()
    changed = _diff(before, after) > 0
    assert changed.sum() > 20
    assert _diff(after, full.render(view, cam)).max() <= 2


def test_frames_render_on_two_threads_at_once() -> None:
    """The kernel releases the GIL, and OpenMP runs launches from two threads
    side by side (how a render node serves several sessions): each thread's
    frames are the ones it draws alone."""
    import threading

    assert kernel_threadsafe()  # OpenMP (libgomp) here, as `.ci/run` installs it
    gen = TerrainGenerator(1234)
    x, y, z = gen.spawn_point()
    view = WorldView.from_world(World(gen), (x, z), radius=48)
    cams = [Camera(x, y + EYE_HEIGHT, z, 0.4 * i, -0.2) for i in range(6)]
    alone = [Renderer(160, 90, view_distance=48, threads=1).render(view, c).copy() for c in cams]
    got: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def draw(k: int) -> None:
        r = Renderer(160, 90, view_distance=48, threads=1)
        for _ in range(3):
            got[k] = [r.render(view, c).copy() for c in cams]

    threads = [threading.Thread(target=draw, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        assert all(np.array_equal(a, b) for a, b in zip(alone, got[k], strict=True))


def test_numbas_fallback_threading_layer_is_not_threadsafe(tmp_path) -> None:
    """Without OpenMP or TBB numba falls back to its workqueue layer, which
    aborts on concurrent launches: the node then renders one frame at a time."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    code = "from renderer import kernel_threadsafe; print(kernel_threadsafe())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.timeout(300)
def test_rays_in_a_cell_boundary_plane_end() -> None:
    """An eye exactly on block boundaries, looking straight along an axis: rays lie
    in grid planes. The kernel once walked them forever and froze a render node
    (found by the experiment runner); now every ray ends and the frame is drawn."""
    gen = TerrainGenerator(1234)
    world = World(gen)
    view = WorldView(radius=80, center=(0.5, 0.5))
    for key in view.missing_sections(80):
        view.set_section(key, world.section(key))
    for subsample in (True, False):
        r = Renderer(160, 90, view_distance=64, subsample=subsample)
        for cam in (Camera(0.0, 104.0, 0.0, 0.0, 0.0), Camera(0.0, 104.6, 0.5, 0.0, 0.0)):
            frame = r.render(view, cam)
            assert frame.shape == (90, 160, 3) and frame.any()


def test_renderer_refuses_sizes_the_kernel_cannot_pack() -> None:
    # A window that wide would be gigabytes; the guard reads only its width.
    # (Voxel keys keep x below bit 52, where the texel id starts.)
    from renderer import raycaster as rc

    with pytest.raises(ValueError, match="bad frame size"):
        Renderer(1 << 16, 18)
    r = Renderer(32, 18)
    with pytest.raises(ValueError, match="view window"):
        r.render(SimpleNamespace(size=rc.MAX_WINDOW * 2), Camera(0.5, 70.0, 0.5, 0.0, 0.0))
