"""The camera: an eye position, a view direction and a vertical field of view.

Directions follow `world.physics` (yaw 0 looks +z, yaw pi/2 looks +x, pitch
up is positive, right = forward x up), so what the renderer shows matches
where the player walks and what the crosshair targets. The output size is
the renderer's, not the camera's: one camera can be rendered at several
resolutions (the bench does), and the horizontal field of view follows from
the aspect ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from world.physics import EYE_HEIGHT, PlayerBody, look_vector, right_vector

Vec3 = tuple[float, float, float]


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


@dataclass(slots=True)
class Camera:
    x: float  # eye position
    y: float
    z: float
    yaw: float = 0.0
    pitch: float = 0.0
    fov_deg: float = 70.0  # vertical

    @classmethod
    def from_body(cls, body: PlayerBody, yaw: float, pitch: float, fov_deg: float = 70.0) -> Camera:
        """The first-person camera of a player body (eye = feet + EYE_HEIGHT)."""
        return cls(body.x, body.y + EYE_HEIGHT, body.z, yaw, pitch, fov_deg)

    @property
    def position(self) -> Vec3:
        return (self.x, self.y, self.z)

    def basis(self) -> tuple[Vec3, Vec3, Vec3]:
        """(forward, right, up) unit vectors of the screen."""
        fwd = look_vector(self.yaw, self.pitch)
        right = right_vector(self.yaw)
        return fwd, right, _cross(right, fwd)

    def tan_half_fov(self, width: int, height: int) -> tuple[float, float]:
        """tan of half the horizontal and vertical field of view."""
        tv = math.tan(math.radians(self.fov_deg) / 2)
        return tv * width / height, tv

    def ray(self, px: float, py: float, width: int, height: int) -> Vec3:
        """Unit direction through pixel (px, py) (integers hit pixel centres)."""
        fwd, right, up = self.basis()
        th, tv = self.tan_half_fov(width, height)
        sx = (2 * (px + 0.5) / width - 1) * th
        sy = (1 - 2 * (py + 0.5) / height) * tv
        d = tuple(f + sx * r + sy * u for f, r, u in zip(fwd, right, up, strict=True))
        n = math.sqrt(sum(c * c for c in d))
        return (d[0] / n, d[1] / n, d[2] / n)

    def project(self, point: Vec3, width: int, height: int) -> tuple[float, float] | None:
        """Pixel coordinates (continuous; pixel centres at +0.5) of a world
        point, or None if it is behind the camera."""
        fwd, right, up = self.basis()
        rel = (point[0] - self.x, point[1] - self.y, point[2] - self.z)
        depth = sum(a * b for a, b in zip(rel, fwd, strict=True))
        if depth <= 1e-9:
            return None
        th, tv = self.tan_half_fov(width, height)
        sx = sum(a * b for a, b in zip(rel, right, strict=True)) / depth / th
        sy = sum(a * b for a, b in zip(rel, up, strict=True)) / depth / tv
        return ((sx + 1) * width / 2, (1 - sy) * height / 2)
