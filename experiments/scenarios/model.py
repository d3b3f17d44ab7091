"""The scenario model: what one experiment is, as plain dataclasses in base units.

A scenario file (docs/scenarios.md) is validated into a `Scenario` by
`experiments.scenarios.load`; everything here is already checked and
converted (seconds, bit/s, ratios 0–1, watts, joules), so the runner, the
testbed and the reports read fields, never units or YAML. ``line`` fields
keep the file line each part came from, for messages during a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

LOCATIONS_NODE = ("edge", "cloud")  # where render nodes (and the sim) may be
DEVICE = "device"  # where clients are unless they name their own device location
CLIENT_MODES = ("local", "remote")
RENDER_MODES = ("none", "local")  # for bot groups; "remote" (streamed bots) comes later
GENERATORS = ("terrain", "flat")


@dataclass(slots=True)
class BurstyLoss:
    """Gilbert–Elliott loss: a good and a bad state, packets lost at each state's rate.

    ``p``: chance per packet of going good → bad; ``r``: bad → good (mean
    burst length 1/r packets); ``bad_loss`` / ``good_loss``: loss in each.
    """

    p: float
    r: float
    bad_loss: float = 1.0
    good_loss: float = 0.0

    @property
    def mean_loss(self) -> float:
        """Long-run loss ratio (stationary distribution of the two states)."""
        if self.p + self.r == 0:
            return self.good_loss
        bad_share = self.p / (self.p + self.r)
        return bad_share * self.bad_loss + (1 - bad_share) * self.good_loss


@dataclass(slots=True)
class LinkSpec:
    """Conditions between two locations, applied in each direction.

    ``latency`` is one-way delay (a ping sees twice it); ``jitter`` is the
    spread of that delay; ``bandwidth`` None = not limited.
    """

    a: str
    b: str
    latency_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0  # independent (Bernoulli) loss ratio
    bursty: BurstyLoss | None = None
    bandwidth_bps: float | None = None
    line: int = 0

    @property
    def key(self) -> frozenset[str]:
        return frozenset((self.a, self.b))

    def updated(self, changes: dict[str, Any]) -> LinkSpec:
        """This link with a `SetLink`'s changes applied."""
        return replace(self, **changes)


@dataclass(slots=True)
class SimSpec:
    location: str = "cloud"
    generator: str = "terrain"
    world_seed: int = 1234
    view_distance: int = 64  # blocks
    tps: int = 20


@dataclass(slots=True)
class RenderNodeSpec:
    name: str
    location: str  # edge | cloud
    capacity: int = 4  # streaming sessions it accepts
    cpu_share: float | None = None  # of one core; None = not limited
    line: int = 0


@dataclass(slots=True)
class PolicyVariant:
    """One scheduler configuration: a policy label, its parameters, engine safeguards."""

    name: str  # for reports: "threshold", "static-remote", ...
    policy: str  # as `shiftcraft scheduler --policy`: static-local, static:NODE, threshold, ...
    params: dict[str, Any] = field(default_factory=dict)  # the policy's section
    engine: dict[str, Any] = field(default_factory=dict)  # `engine:` safeguards

    def config(self) -> dict[str, Any]:
        """The scheduler's ``--config`` mapping (docs/scheduler.md) for this variant."""
        out: dict[str, Any] = {"policy": self.policy}
        if self.engine:
            out["engine"] = dict(self.engine)
        kind = self.policy.split(":", 1)[0]
        if self.params and kind in ("threshold", "battery", "score"):
            out[kind] = dict(self.params)
        return out


@dataclass(slots=True)
class SchedulerSpec:
    policy: str = "threshold"
    params: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    variants: list[PolicyVariant] = field(default_factory=list)  # a sweep; empty = just `policy`

    def runs(self) -> list[PolicyVariant]:
        """The configurations an experiment runs, each ``repeats`` times."""
        if self.variants:
            return list(self.variants)
        return [PolicyVariant(self.policy, self.policy, dict(self.params), dict(self.engine))]


# The device model belongs to the client; re-exported here for scenario code.
from client.device import DEVICE_PROFILES, BatteryModel, DeviceProfile  # noqa: E402, F401


@dataclass(slots=True)
class ClientSpec:
    """A game client (headless, rendering or streaming) with a device profile."""

    name: str
    device: str  # a DEVICE_PROFILES key
    location: str = DEVICE  # a device-side location links refer to
    cpu_share: float = 1.0
    battery: BatteryModel | None = None
    mode: str = "local"  # initial: local | remote
    node: str | None = None  # initial render node when remote
    resolution: tuple[int, int] = (640, 360)
    max_fps: float = 60.0  # 0 = uncapped
    script: str = ""  # client.script syntax; "" = walk about (a looped default path)
    line: int = 0


@dataclass(slots=True)
class BotGroupSpec:
    """``count`` bots of one behaviour, named NAME0, NAME1, ... (experiments.bots)."""

    name: str
    count: int
    behaviour: str = "walk"
    join_rate: float = 5.0  # joins per second
    render: str = "none"  # none | local
    location: str = DEVICE
    options: dict[str, Any] = field(default_factory=dict)  # `BehaviourOptions` fields
    line: int = 0


# -- timed actions ---------------------------------------------------------------
@dataclass(slots=True)
class Action:
    """Something that happens ``at_s`` seconds into the measured phase (after warm-up)."""

    at_s: float
    line: int

    @property
    def kind(self) -> str:
        return ACTION_KINDS_BY_CLASS[type(self)]


@dataclass(slots=True)
class SetLink(Action):
    a: str
    b: str
    changes: dict[str, Any]  # LinkSpec fields -> new values (base units)


@dataclass(slots=True)
class SetCpu(Action):
    client: str
    share: float  # of one core


@dataclass(slots=True)
class SetBattery(Action):
    client: str
    level: float  # 0..1


@dataclass(slots=True)
class Charger(Action):
    client: str
    plugged: bool  # plug: True, unplug: False


@dataclass(slots=True)
class Migrate(Action):
    client: str
    to: str  # "device" or a render node's name


@dataclass(slots=True)
class Kill(Action):
    node: str  # a render node's name, "scheduler" or "sim"


ACTION_KINDS_BY_CLASS: dict[type, str] = {
    SetLink: "set_link",
    SetCpu: "set_cpu",
    SetBattery: "set_battery",
    Charger: "plug",  # or "unplug": see Charger.plugged
    Migrate: "migrate",
    Kill: "kill",
}


@dataclass(slots=True)
class Run:
    """One run of a scenario: a scheduler variant, a repeat index, its seed."""

    variant: PolicyVariant
    repeat: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.variant.name}-r{self.repeat + 1}"


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    warmup_s: float = 0.0
    repeats: int = 1
    seeds: list[int] = field(default_factory=lambda: [1])
    sim: SimSpec = field(default_factory=SimSpec)
    render_nodes: list[RenderNodeSpec] = field(default_factory=list)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    clients: list[ClientSpec] = field(default_factory=list)
    bots: list[BotGroupSpec] = field(default_factory=list)
    links: list[LinkSpec] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)  # sorted by time
    path: Path | None = None

    def runs(self) -> list[Run]:
        """Every run, variant by variant, each repeated with its own seed."""
        return [
            Run(variant, i, self.seeds[i])
            for variant in self.scheduler.runs()
            for i in range(self.repeats)
        ]

    @property
    def run_seconds(self) -> float:
        return self.warmup_s + self.duration_s

    @property
    def total_seconds(self) -> float:
        """Measured plus warm-up time over all runs (start-up and teardown not included)."""
        return self.run_seconds * len(self.runs())

    def node(self, name: str) -> RenderNodeSpec | None:
        return next((n for n in self.render_nodes if n.name == name), None)

    def client(self, name: str) -> ClientSpec | None:
        return next((c for c in self.clients if c.name == name), None)

    def link(self, a: str, b: str) -> LinkSpec | None:
        key = frozenset((a, b))
        return next((link for link in self.links if link.key == key), None)

    def links_at(self, t: float) -> list[LinkSpec]:
        """The link conditions in force ``t`` seconds into the measured phase."""
        current = {link.key: link for link in self.links}
        for action in self.actions:
            if isinstance(action, SetLink) and action.at_s <= t:
                key = frozenset((action.a, action.b))
                current[key] = current[key].updated(action.changes)
        return list(current.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path) if self.path else None
        out["actions"] = [{"kind": a.kind, **asdict(a)} for a in self.actions]
        for a, d in zip(self.actions, out["actions"], strict=True):
            if isinstance(a, Charger):
                d["kind"] = "plug" if a.plugged else "unplug"
        return out
