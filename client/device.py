"""The client's device: its profile (CPU share, resolution) and its battery.

The battery is modelled, not measured, unless the machine has a real one and
no model is configured. The model is driven once a second by what the client
really does: process CPU time, bytes moved on the network and whether the
screen is on, so offloading the renderer visibly saves energy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any


@dataclass(slots=True)
class BatteryModel:
    """A device battery, drained from measured CPU time, traffic and screen time.

    power = idle_w + screen_w (screen on) + cpu_w × busy cores
            + radio_j_per_mb × MB moved per second − charger_w (plugged in)
    """

    capacity_j: float
    level: float = 0.8  # 0..1 at the start
    charging: bool = False  # on a charger at the start
    idle_w: float = 0.3
    screen_w: float = 1.0
    cpu_w: float = 2.0  # per fully busy core
    radio_j_per_mb: float = 0.3
    charger_w: float = 10.0


@dataclass(slots=True)
class DeviceProfile:
    name: str
    cpu_share: float  # of one core: 0.5 = half a core, 2.0 = two cores
    resolution: tuple[int, int]
    battery: BatteryModel | None


# Defaults per device kind; a client may override any of them. Figures are
# typical, not measured: a phone SoC's big cores under a CPU quota, a laptop
# on battery, a standalone headset, a handheld console in its dock (charging,
# drawing a TV, so no screen power of its own).
DEVICE_PROFILES: dict[str, DeviceProfile] = {
    "phone": DeviceProfile(
        "phone",
        cpu_share=0.6,
        resolution=(640, 360),
        battery=BatteryModel(
            capacity_j=15 * 3600, level=0.8, idle_w=0.3, screen_w=1.0, cpu_w=2.0,
            radio_j_per_mb=0.3, charger_w=15.0,
        ),
    ),
    "laptop-battery": DeviceProfile(
        "laptop-battery",
        cpu_share=1.0,
        resolution=(960, 540),
        battery=BatteryModel(
            capacity_j=50 * 3600, level=0.6, idle_w=3.0, screen_w=2.0, cpu_w=8.0,
            radio_j_per_mb=0.05, charger_w=45.0,
        ),
    ),
    "vr-headset": DeviceProfile(
        "vr-headset",
        cpu_share=0.8,
        resolution=(832, 464),
        battery=BatteryModel(
            capacity_j=20 * 3600, level=0.9, idle_w=1.5, screen_w=2.5, cpu_w=3.0,
            radio_j_per_mb=0.1, charger_w=18.0,
        ),
    ),
    "handheld-docked": DeviceProfile(
        "handheld-docked",
        cpu_share=1.0,
        resolution=(960, 540),
        battery=BatteryModel(
            capacity_j=16 * 3600, level=0.7, charging=True, idle_w=1.0, screen_w=0.0,
            cpu_w=4.0, radio_j_per_mb=0.1, charger_w=39.0,
        ),
    ),
}  # fmt: skip


def _process_cpu_seconds() -> float:
    """CPU time this process has used (user + system), in seconds."""
    t = os.times()
    return t.user + t.system


@dataclass(slots=True)
class BatteryReading:
    """What a battery says now, as telemetry reports it (None = unknown)."""

    level: float | None  # 0..1
    charging: bool | None  # on a charger
    power_w: float | None  # drawn by the device (not counting the charger)
    source: str  # "model" | "real"


class Battery:
    """A modelled battery (`BatteryModel`), stepped by what the client really does.

    `sample` is called about once a second with the process's total CPU time
    (measured, unless given), total bytes moved on the network and whether
    the screen is on; it turns the differences since the last call into
    power and energy. `advance` is the same maths for a known interval.

    power = idle + screen (on) + cpu_w × busy cores + radio_j_per_mb × MB/s;
    on a charger ``charger_w`` flows in, so the level rises whenever the
    charger outpaces the draw, and never passes 100 % (or falls below 0).
    """

    source = "model"

    def __init__(
        self,
        model: BatteryModel,
        *,
        cpu_seconds: Callable[[], float] = _process_cpu_seconds,
    ) -> None:
        if model.capacity_j <= 0:
            raise ValueError("battery capacity must be positive")
        self.model = replace(model)  # our own copy: levels change, profiles do not
        self.level = _ratio(model.level, "battery level")
        self.charging = bool(model.charging)
        self.power_w = model.idle_w  # drawn, last interval
        self.energy_used_j = 0.0  # drawn since start (charger not counted)
        self._cpu_seconds = cpu_seconds
        self._last: tuple[float, float, int] | None = None  # (now, cpu s, bytes)

    # -- control -------------------------------------------------------------------
    def set_level(self, level: float) -> None:
        self.level = _ratio(level, "battery level")

    def plug(self, plugged: bool) -> None:
        self.charging = bool(plugged)

    # -- the model -----------------------------------------------------------------
    def draw_w(self, busy_cores: float, bytes_per_s: float, screen_on: bool) -> float:
        """Power the device draws doing this (watts), charger not counted."""
        m = self.model
        return (
            m.idle_w
            + (m.screen_w if screen_on else 0.0)
            + m.cpu_w * max(0.0, busy_cores)
            + m.radio_j_per_mb * max(0.0, bytes_per_s) / 1e6
        )

    def advance(self, dt: float, busy_cores: float, bytes_per_s: float, screen_on: bool) -> None:
        """Run the model for ``dt`` seconds at this load."""
        if dt <= 0:
            return
        draw = self.draw_w(busy_cores, bytes_per_s, screen_on)
        self.power_w = draw
        self.energy_used_j += draw * dt
        net = draw - (self.model.charger_w if self.charging else 0.0)
        self.level = min(1.0, max(0.0, self.level - net * dt / self.model.capacity_j))

    def sample(
        self, now: float, bytes_total: int, screen_on: bool, cpu_total_s: float | None = None
    ) -> BatteryReading:
        """Step the model from the last call to ``now`` with measured counters."""
        cpu = self._cpu_seconds() if cpu_total_s is None else cpu_total_s
        if self._last is not None:
            t0, cpu0, bytes0 = self._last
            dt = now - t0
            if dt > 0:
                busy = max(0.0, cpu - cpu0) / dt
                rate = max(0, bytes_total - bytes0) / dt
                self.advance(dt, busy, rate, screen_on)
        self._last = (now, cpu, bytes_total)
        return self.reading()

    def reading(self) -> BatteryReading:
        return BatteryReading(self.level, self.charging, self.power_w, self.source)


class RealBattery:
    """The machine's own battery (psutil): read, never set. Power is unknown."""

    source = "real"

    def __init__(self, read: Callable[[], Any] | None = None) -> None:
        import psutil

        self._read = read or psutil.sensors_battery

    @classmethod
    def probe(cls) -> RealBattery | None:
        """The real battery, or None where the machine has none (or psutil cannot tell)."""
        import psutil

        # psutil has no `sensors_battery` on platforms where it cannot read one.
        read = getattr(psutil, "sensors_battery", None)
        if read is None:
            return None
        try:
            if read() is None:
                return None
        except OSError:  # a power-supply entry that could not be read
            return None
        return cls(read)

    def set_level(self, level: float) -> None:
        raise BatteryControlError("this client reads a real battery: its level cannot be set")

    def plug(self, plugged: bool) -> None:
        raise BatteryControlError("this client reads a real battery: plug in the charger yourself")

    def sample(
        self, now: float, bytes_total: int, screen_on: bool, cpu_total_s: float | None = None
    ) -> BatteryReading:
        return self.reading()

    def reading(self) -> BatteryReading:
        try:
            b = self._read()
        except Exception:  # a flaky sensor is "unknown", never a crash
            b = None
        if b is None:
            return BatteryReading(None, None, None, self.source)
        return BatteryReading(
            min(1.0, max(0.0, float(b.percent) / 100.0)),
            None if b.power_plugged is None else bool(b.power_plugged),
            None,
            self.source,
        )


class BatteryControlError(Exception):
    """A battery that cannot be changed from software was asked to change."""


def _ratio(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number within 0..1, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must be within 0..1, got {value!r}")
    return v


def make_battery(
    device: str | None = None,
    *,
    level: float | None = None,
    charging: bool | None = None,
    capacity_j: float | None = None,
    real: Callable[[], RealBattery | None] = RealBattery.probe,
) -> Battery | RealBattery | None:
    """The battery a client reports.

    A device profile (or an explicit ``level``/``charging``) means a modelled
    battery: the profile's model, or a phone-sized default, with the given
    level and charger state. Otherwise the machine's real battery, if it has
    one; otherwise None (telemetry then says the battery is unknown).
    ``capacity_j`` resizes a modelled battery (demos: a story in a minute).
    """
    profile = DEVICE_PROFILES.get(device) if device else None
    if device and profile is None:
        known = ", ".join(DEVICE_PROFILES)
        raise ValueError(f"unknown device profile {device!r} (known: {known})")
    model = profile.battery if profile is not None else None
    if model is None and (level is not None or charging is not None or capacity_j is not None):
        model = BatteryModel(capacity_j=15 * 3600)
    if model is not None:
        model = replace(model)
        if level is not None:
            model.level = _ratio(level, "battery level")
        if charging is not None:
            model.charging = charging
        if capacity_j is not None:
            model.capacity_j = float(capacity_j)
        return Battery(model)
    if profile is not None:
        return None  # a profile with no battery (mains powered)
    return real()
