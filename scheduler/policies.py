"""Placement policies: small classes with one decision method.

Each policy sees one client at a time through a `ClientView` — smoothed
telemetry plus the placements it could move to (`Candidate`s, already
limited to live nodes with room) — and answers with a `Verdict`:

* ``Verdict(target, reason, detail)`` — move there, because ``reason``;
* ``Verdict(None, reason, detail)`` — a threshold was crossed but the
  policy holds (hysteresis not yet satisfied, nowhere better to go): the
  engine logs it, so a run explains why a player did *not* move;
* ``None`` — nothing to say.

Policies keep their own per-client state (streak counters, what they left
and when): the engine makes one policy object per client. They never check
dwell time, settle windows, staleness or whether a target is dead or full —
the engine applies those safeguards to every policy alike (`engine.py`).

Parameters are dataclasses filled from the configuration file's section
named after the policy (`docs/scheduler.md` lists them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from scheduler.messages import DEVICE, NAME_RE
from scheduler.smoothing import _r

LOCATION_RANK = {"device": 0, "edge": 1, "cloud": 2}


# -- what a policy sees ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Candidate:
    """A placement the client could render from (or renders from now)."""

    node: str  # "device" or a node name
    location: str  # device | edge | cloud
    current: bool = False
    rtt_ms: float | None = None  # predicted client<->node RTT (SRTT + k·RTTVAR); device: None
    rtt_source: str = ""  # measured | probe | default
    bandwidth_bps: float | None = None  # known spare bandwidth on the path (bits/s)
    bandwidth_ok: bool = True  # >= bandwidth_factor x the stream's bitrate (or unknown)
    free: int = 1  # sessions left
    fps: float | None = None  # node: mean FPS it delivers now; device: remembered local FPS
    measured_fps: float | None = None  # this client's FPS median when it was last here
    measured_age_s: float | None = None
    encode_ms: float | None = None
    cost: float = 0.0  # per session, in the config's unit

    @property
    def mode(self) -> str:
        return "local" if self.node == DEVICE else "remote"

    def to_log(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "location": self.location,
            "current": self.current,
            "rtt_ms": _r(self.rtt_ms),
            "rtt_source": self.rtt_source,
            "bandwidth_bps": _r(self.bandwidth_bps),
            "bandwidth_ok": self.bandwidth_ok,
            "free": self.free,
            "fps": _r(self.fps),
            "measured_fps": _r(self.measured_fps),
            "measured_age_s": _r(self.measured_age_s),
            "cost": self.cost,
        }


@dataclass(frozen=True, slots=True)
class ClientView:
    """One client's smoothed state at evaluation time ``now``."""

    name: str
    now: float
    placement: str
    location: str
    samples: int  # samples in the FPS window
    fps_median: float | None
    fps_p10: float | None
    frame_p95_ms: float | None = None
    rtt_sim_ms: float | None = None  # SRTT to the sim
    rtt_node_ms: float | None = None  # predicted RTT to the current node (remote)
    battery_level: float | None = None
    battery_charging: bool | None = None
    battery_draining: bool | None = None
    power_local_w: float | None = None  # measured while local, on battery
    power_remote_w: float | None = None
    cpu: float | None = None
    local_fps: float | None = None  # the device's FPS when it last rendered
    local_fps_age_s: float | None = None
    since_switch_s: float | None = None
    candidates: tuple[Candidate, ...] = ()

    @property
    def mode(self) -> str:
        return "local" if self.placement == DEVICE else "remote"

    def candidate(self, node: str) -> Candidate | None:
        for c in self.candidates:
            if c.node == node:
                return c
        return None

    def alternatives(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.current]

    def to_log(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("name", "now", "candidates"):
                continue
            v = getattr(self, f.name)
            d[f.name] = _r(v, 4) if isinstance(v, float) else v
        d["candidates"] = [c.to_log() for c in self.candidates]
        return d


@dataclass(slots=True)
class Verdict:
    target: str | None  # a placement to move to; None: hold
    reason: str  # a short code (a metrics label): low_fps, battery_low, ...
    detail: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    name: str

    def decide(self, view: ClientView) -> Verdict | None: ...


def _remote_rank(c: Candidate) -> tuple:
    """Edge before cloud, then the shortest predicted RTT, then the most room."""
    rtt = c.rtt_ms if c.rtt_ms is not None else math.inf
    return (LOCATION_RANK.get(c.location, 9), rtt, -c.free, c.node)


# -- static -------------------------------------------------------------------------
@dataclass(slots=True)
class StaticParams:
    node: str = DEVICE  # where every client renders: "device" or a node name


class StaticPolicy:
    """Always the same placement: the baselines experiments compare against."""

    name = "static"

    def __init__(self, p: StaticParams) -> None:
        self.p = p

    def decide(self, view: ClientView) -> Verdict | None:
        if view.placement == self.p.node:
            return None
        return Verdict(self.p.node, "static", {"target": self.p.node})


# -- threshold ----------------------------------------------------------------------
@dataclass(slots=True)
class ThresholdParams:
    fps_min: float = 25.0  # below this the placement is bad (streams run at 30)
    fps_stat: str = "median"  # median | p10: which window statistic is compared
    rtt_max_ms: float = 80.0  # a remote placement with a higher predicted RTT is bad
    k_leave: int = 3  # consecutive bad evaluations before leaving
    k_return: int = 10  # consecutive better evaluations before returning to a left placement
    memory_s: float = 60.0  # a placement left as bad is not considered again for this long
    max_backoff: int = 8  # memory_s doubles (up to this factor) for each failed return

    def validate(self) -> None:
        if self.fps_stat not in ("median", "p10"):
            raise ValueError("threshold.fps_stat must be median or p10")
        if self.k_leave < 1 or self.k_return < self.k_leave:
            raise ValueError("threshold: need 1 <= k_leave <= k_return")
        if self.memory_s < 0 or self.max_backoff < 1:
            raise ValueError("threshold: memory_s >= 0 and max_backoff >= 1")


class ThresholdPolicy:
    """FPS and RTT thresholds with hysteresis.

    The current placement is *bad* when its FPS statistic is under
    ``fps_min`` or (remote) its predicted RTT is over ``rtt_max_ms``. After
    ``k_leave`` bad evaluations in a row the client leaves for the first
    alternative that looks good (edge before cloud, shortest RTT; the device
    last). Leaving is quick, coming back is slow:

    * a placement the client left as bad is not considered for ``memory_s``
      (it was just measured bad; a node's aggregate numbers and the
      device's old FPS cannot tell otherwise yet);
    * after that it must look better for ``k_return`` evaluations in a row;
    * a return that fails (left again within ``memory_s``) doubles that
      placement's memory, up to ``max_backoff`` times — so two mediocre
      placements are probed less and less often instead of flapping.

    State changes only on what the policy *observes* (the placement in the
    view), never on what it proposed: the engine may hold a proposal.
    """

    name = "threshold"

    def __init__(self, p: ThresholdParams) -> None:
        p.validate()
        self.p = p
        self.bad_streak = 0
        self.better: dict[str, int] = {}  # alternative -> consecutive evaluations it looked better
        self.left: dict[str, float] = {}  # placement -> when the client left it as bad
        self.returned: dict[str, float] = {}  # placement -> when the client came back to it
        self.backoff: dict[str, int] = {}  # placement -> memory multiplier
        self._placement: str | None = None

    def _fps(self, v: ClientView) -> float | None:
        return v.fps_median if self.p.fps_stat == "median" else v.fps_p10

    def _bad(self, v: ClientView) -> list[str]:
        why = []
        fps = self._fps(v)
        if fps is not None and fps < self.p.fps_min:
            why.append("low_fps")
        if v.mode == "remote" and v.rtt_node_ms is not None and v.rtt_node_ms > self.p.rtt_max_ms:
            why.append("high_rtt")
        return why

    def memory(self, placement: str) -> float:
        return self.p.memory_s * self.backoff.get(placement, 1)

    def _looks_good(self, c: Candidate, v: ClientView) -> bool:
        p = self.p
        left_at = self.left.get(c.node)
        if left_at is not None and v.now - left_at < self.memory(c.node):
            return False  # measured bad not long ago
        if c.node == DEVICE:
            if v.local_fps is None or v.local_fps_age_s is None:
                return True  # never measured: worth a try when the current place is bad
            return v.local_fps >= p.fps_min or v.local_fps_age_s >= self.memory(DEVICE)
        if not c.bandwidth_ok or c.rtt_ms is None or c.rtt_ms > p.rtt_max_ms:
            return False
        return c.fps is None or c.fps >= p.fps_min  # a node that streams slowly is overloaded

    def _observe(self, v: ClientView) -> None:
        """A switch happened (ours or not): record what was left, reset the streaks."""
        old = self._placement
        if old is not None and self.bad_streak >= self.p.k_leave:
            back_at = self.returned.get(old)
            if back_at is not None and v.now - back_at <= self.memory(old):
                # We came back here and it was bad again at once: wait longer next time.
                self.backoff[old] = min(self.backoff.get(old, 1) * 2, self.p.max_backoff)
            self.left[old] = v.now
        if v.placement in self.left:
            self.returned[v.placement] = v.now
        self._placement = v.placement
        self.bad_streak = 0
        self.better.clear()

    def decide(self, v: ClientView) -> Verdict | None:
        p = self.p
        if v.placement != self._placement:
            self._observe(v)
        why = self._bad(v)
        good = [c for c in v.alternatives() if self._looks_good(c, v)]
        for c in v.alternatives():
            self.better[c.node] = self.better.get(c.node, 0) + 1 if why and c in good else 0
        if not why:
            self.bad_streak = 0
            return None
        self.bad_streak += 1
        detail: dict[str, Any] = {
            "bad": why,
            "fps": _r(self._fps(v)),
            "fps_min": p.fps_min,
            "rtt_ms": _r(v.rtt_node_ms),
            "rtt_max_ms": p.rtt_max_ms,
            "streak": self.bad_streak,
            "k_leave": p.k_leave,
        }
        reason = why[0]
        if self.bad_streak < p.k_leave:
            return Verdict(None, "hysteresis", detail)
        # Nodes first (edge, then by RTT), the device last.
        ordered = sorted((c for c in good if c.node != DEVICE), key=_remote_rank)
        ordered += [c for c in good if c.node == DEVICE]
        waiting = {}
        for c in ordered:
            returning = c.node in self.left
            need = p.k_return if returning else p.k_leave
            if self.better.get(c.node, 0) >= need:
                detail["return"] = returning
                return Verdict(c.node, reason, detail)
            waiting[c.node] = f"{self.better.get(c.node, 0)}/{need}"
        if waiting:
            detail["waiting"] = waiting
            return Verdict(None, "return_hysteresis", detail)
        detail["quarantined"] = {
            n: round(self.memory(n) - (v.now - t), 1)
            for n, t in self.left.items()
            if v.now - t < self.memory(n)
        }
        return Verdict(None, "no_target", detail)


# -- battery ------------------------------------------------------------------------
@dataclass(slots=True)
class BatteryParams:
    on_level: float = 0.15  # offload at or below this level while draining
    off_level: float = 0.20  # come back at or above this level (or on a charger)
    k_on: int = 2  # consecutive low-and-draining evaluations before offloading
    k_off: int = 3  # consecutive evaluations on charger / above off_level before returning
    rtt_max_ms: float = 150.0  # a node further away is not an offload target

    def validate(self) -> None:
        if not 0.0 <= self.on_level < self.off_level <= 1.0:
            raise ValueError("battery: need 0 <= on_level < off_level <= 1")
        if self.k_on < 1 or self.k_off < 1:
            raise ValueError("battery: k_on and k_off must be >= 1")


class BatteryPolicy:
    """Offload rendering when the battery is low and draining; come back on a charger.

    The band between ``on_level`` and ``off_level`` is the hysteresis: a
    gauge wobbling around 15 % does not move the player back and forth. On
    battery with an unknown level, or with the level unknown, nothing
    happens (unknown never triggers a switch).
    """

    name = "battery"

    def __init__(self, p: BatteryParams) -> None:
        p.validate()
        self.p = p
        self.on_streak = 0
        self.off_streak = 0
        self._placement: str | None = None

    def decide(self, v: ClientView) -> Verdict | None:
        p = self.p
        if v.placement != self._placement:
            self._placement = v.placement
            self.on_streak = self.off_streak = 0
        level = v.battery_level
        if level is None:
            return None
        detail: dict[str, Any] = {
            "level": round(level, 4),
            "charging": v.battery_charging,
            "draining": v.battery_draining,
            "on_level": p.on_level,
            "off_level": p.off_level,
        }
        if v.mode == "local":
            self.off_streak = 0
            if not (level <= p.on_level and v.battery_draining is True):
                self.on_streak = 0
                return None
            self.on_streak += 1
            detail.update(streak=self.on_streak, k=p.k_on)
            if self.on_streak < p.k_on:
                return Verdict(None, "hysteresis", detail)
            targets = sorted(
                (
                    c
                    for c in v.alternatives()
                    if c.node != DEVICE
                    and c.bandwidth_ok
                    and c.rtt_ms is not None
                    and c.rtt_ms <= p.rtt_max_ms
                ),
                key=_remote_rank,
            )
            if not targets:
                return Verdict(None, "no_target", detail)
            return Verdict(targets[0].node, "battery_low", detail)
        # Remote: return on a charger, or once the level is back above off_level.
        self.on_streak = 0
        on_charger = v.battery_draining is False
        if not (on_charger or level >= p.off_level) or v.candidate(DEVICE) is None:
            self.off_streak = 0
            return None
        self.off_streak += 1
        detail.update(streak=self.off_streak, k=p.k_off)
        if self.off_streak < p.k_off:
            return Verdict(None, "hysteresis", detail)
        return Verdict(DEVICE, "on_charger" if on_charger else "battery_ok", detail)


# -- score --------------------------------------------------------------------------
@dataclass(slots=True)
class ScoreParams:
    target_fps: float = 30.0  # frame-rate deficit is measured against this
    rtt_budget_ms: float = 100.0  # a node with a higher predicted RTT is infeasible
    w_fps: float = 2.0  # the frame-rate deficit is what offloading is for
    w_latency: float = 0.5
    w_energy: float = 0.5
    w_cost: float = 0.2
    margin: float = 0.1  # switch only when the cost falls by more than this
    k_switch: int = 3  # ... for this many evaluations in a row
    margin_window_s: float = 120.0  # the margin doubles for each switch within this window
    local_power_w: float = 4.0  # device power while rendering, until measured
    remote_power_w: float = 2.5  # while decoding a stream, until measured
    power_norm_w: float = 5.0
    memory_s: float = 120.0  # this client's FPS measured at a placement counts this long
    local_fps_prior: float = 0.0  # 0: assume the device reaches target_fps
    remote_fps_prior: float = 0.0  # a node that reports no FPS: 0 = target_fps

    def validate(self) -> None:
        if self.target_fps <= 0 or self.rtt_budget_ms <= 0 or self.power_norm_w <= 0:
            raise ValueError("score: target_fps, rtt_budget_ms and power_norm_w must be > 0")
        if self.k_switch < 1 or self.margin < 0:
            raise ValueError("score: k_switch >= 1, margin >= 0")


class ScorePolicy:
    """Weighted cost over every feasible placement; switch when clearly better.

    cost = w_fps·deficit + w_latency·latency + w_energy·energy + w_cost·node cost

    * deficit: ``max(0, target_fps - predicted FPS) / target_fps`` — the
      measured FPS where the client is, the remembered local FPS for the
      device, the node's delivered FPS for a node;
    * latency: ``(one frame interval + RTT + encode) / budget`` for a node
      (the receiver holds a frame), ``one frame interval / budget`` for
      the device;
    * energy: predicted device power / ``power_norm_w``, weighted by how
      much the battery matters (0 on a charger or without a battery,
      ``1.5 - level`` on battery);
    * node cost: the node's own cost, or its location's (engine
      ``location_cost``).

    A node is feasible with predicted RTT within the budget, enough
    bandwidth and a free session (the engine already dropped dead and full
    ones). The client moves only when the best placement beats the current
    one by more than the margin for ``k_switch`` evaluations in a row (also
    when the current placement became infeasible; at once when its node is
    gone). The margin is ``margin`` doubled for every switch of this client
    within ``margin_window_s``.

    Predicted FPS is what *this client* measured at a placement (a slow
    average over its last stay, `TelemetrySmoother.fps_long`) while that
    memory is younger than ``memory_s``; otherwise the node's own figure or
    the priors.
    """

    name = "score"

    def __init__(self, p: ScoreParams) -> None:
        p.validate()
        self.p = p
        self.streak = 0
        self.streak_target: str | None = None
        self.switched_at: list[float] = []  # observed switches (for the margin)
        self._placement: str | None = None

    def margin(self, now: float) -> float:
        """The margin, doubled for every recent switch: a switch has a price
        (a display gap, a new session), and a policy that keeps changing its
        mind should need more and more evidence."""
        w = self.p.margin_window_s
        self.switched_at = [t for t in self.switched_at if now - t < w]
        return self.p.margin * 2 ** len(self.switched_at)

    def _fps(self, c: Candidate, v: ClientView) -> float:
        p = self.p
        if c.current and v.fps_median is not None:
            # The slow average where it is, like the others' memories: comparing a
            # noisy window against long averages would flap.
            return c.measured_fps if c.measured_fps is not None else v.fps_median
        age = c.measured_age_s
        if c.measured_fps is not None and age is not None and age <= p.memory_s:
            return c.measured_fps  # what this client itself got there
        if c.node == DEVICE:
            return p.local_fps_prior or p.target_fps
        if c.fps is not None:
            return c.fps
        return p.remote_fps_prior or p.target_fps

    def _power(self, c: Candidate, v: ClientView) -> float:
        if c.node == DEVICE:
            return v.power_local_w if v.power_local_w is not None else self.p.local_power_w
        return v.power_remote_w if v.power_remote_w is not None else self.p.remote_power_w

    def cost(self, c: Candidate, v: ClientView) -> tuple[float, dict[str, float]]:
        """The candidate's cost (inf if infeasible) and its terms."""
        p = self.p
        if c.node != DEVICE and (
            not c.bandwidth_ok or c.rtt_ms is None or c.rtt_ms > p.rtt_budget_ms
        ):
            return math.inf, {}
        fps = self._fps(c, v)
        deficit = max(0.0, p.target_fps - fps) / p.target_fps
        # Input-to-photon delay beyond the sim's: a frame interval where the
        # picture is made, plus the round trip and the encoder for a node.
        delay_ms = 1000.0 / max(fps, 1.0)
        if c.node != DEVICE:
            delay_ms += (c.rtt_ms or 0.0) + (c.encode_ms or 0.0)
        latency = delay_ms / p.rtt_budget_ms
        battery_weight = 0.0
        if v.battery_level is not None and v.battery_charging is not True:
            battery_weight = 1.5 - v.battery_level
        energy = battery_weight * self._power(c, v) / p.power_norm_w
        node_cost = c.cost
        total = (
            p.w_fps * deficit + p.w_latency * latency + p.w_energy * energy + p.w_cost * node_cost
        )
        terms = {
            "deficit": round(deficit, 4),
            "latency": round(latency, 4),
            "energy": round(energy, 4),
            "node_cost": round(node_cost, 4),
            "total": round(total, 4),
        }
        return total, terms

    def decide(self, v: ClientView) -> Verdict | None:
        p = self.p
        if v.placement != self._placement:
            if self._placement is not None:
                self.switched_at.append(v.now)
            self._placement = v.placement
            self.streak = 0
        margin = self.margin(v.now)
        scored = []
        for c in v.candidates:
            total, terms = self.cost(c, v)
            scored.append((total, c, terms))
        current = next((s for s in scored if s[1].current), None)
        feasible = [s for s in scored if math.isfinite(s[0])]
        if not feasible:
            self.streak = 0
            return None
        best = min(feasible, key=lambda s: (s[0], _remote_rank(s[1])))
        cur_cost = current[0] if current is not None else math.inf
        detail: dict[str, Any] = {
            "costs": {s[1].node: s[2] or "infeasible" for s in scored},
            "current_cost": None if math.isinf(cur_cost) else round(cur_cost, 4),
            "best": best[1].node,
            "margin": margin,
        }
        if best[1].current:
            self.streak = 0
            return None
        if current is None:
            # The current node is gone (dead, unknown): nothing to weigh against.
            self.streak = 0
            return Verdict(best[1].node, "current_infeasible", detail)
        if math.isinf(cur_cost):
            reason = "current_infeasible"  # over the RTT budget or short of bandwidth
        else:
            gain = cur_cost - best[0]
            detail["gain"] = round(gain, 4)
            if gain <= margin:
                self.streak = 0
                return None
            reason = "better_score"
        self.streak = self.streak + 1 if self.streak_target == best[1].node else 1
        self.streak_target = best[1].node
        detail.update(streak=self.streak, k=p.k_switch)
        if self.streak < p.k_switch:
            return Verdict(None, "hysteresis", detail)
        self.streak = 0
        return Verdict(best[1].node, reason, detail)


# -- construction ---------------------------------------------------------------------
POLICY_NAMES = ("static-local", "static:NODE", "threshold", "battery", "score")
PolicyFactory = Callable[[], Policy]


def params_from_dict(cls: type, values: dict[str, Any] | None, section: str) -> Any:
    """Fill a params dataclass from a config mapping; unknown keys and bad types are errors."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{section}: unknown parameter(s) {', '.join(unknown)}")
    defaults = cls()
    for name, v in values.items():
        want = type(getattr(defaults, name))
        if want is float and type(v) is int:
            values[name] = float(v)
        elif want is dict and isinstance(v, dict):
            values[name] = {**getattr(defaults, name), **v}
        elif type(v) is not want:
            raise ValueError(f"{section}.{name}: expected {want.__name__}, got {v!r}")
    return cls(**values)


@dataclass(slots=True)
class PolicySpec:
    """A policy chosen by name (``--policy``) with its parameters (config file)."""

    kind: str  # static | threshold | battery | score
    params: Any
    label: str  # as given: static-local, static:edge-1, threshold, ...

    KINDS: ClassVar[dict[str, tuple[type, type]]] = {
        "static": (StaticPolicy, StaticParams),
        "threshold": (ThresholdPolicy, ThresholdParams),
        "battery": (BatteryPolicy, BatteryParams),
        "score": (ScorePolicy, ScoreParams),
    }

    def factory(self) -> PolicyFactory:
        cls = self.KINDS[self.kind][0]
        return lambda: cls(dataclasses.replace(self.params))


def parse_policy(label: str, config: dict[str, Any] | None = None) -> PolicySpec:
    """``static-local`` | ``static:NODE`` | ``threshold`` | ``battery`` | ``score``.

    ``config`` is the whole configuration mapping; the section named after
    the policy kind holds its parameters. Raises ValueError with a sentence.
    """
    config = config or {}
    if label in ("static-local", "static"):
        return PolicySpec("static", StaticParams(DEVICE), label)
    if label.startswith("static:"):
        node = label.removeprefix("static:")
        if not NAME_RE.match(node):
            raise ValueError(f"bad node name in --policy {label!r}")
        return PolicySpec("static", StaticParams(node), label)
    if label not in PolicySpec.KINDS:
        raise ValueError(f"unknown policy {label!r}: choose one of {', '.join(POLICY_NAMES)}")
    params_cls = PolicySpec.KINDS[label][1]
    params = params_from_dict(params_cls, config.get(label), label)
    params.validate()
    return PolicySpec(label, params, label)
