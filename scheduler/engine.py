"""The decision engine: telemetry in, safeguarded decisions out. No networking.

The service (`scheduler.service`) feeds it what arrives on websockets; the
trace replayer (`scheduler.replay`) feeds it recorded telemetry with the
trace's own clock. Both get the same decisions, which is what makes policy
tests on traces meaningful.

Per client, an evaluation goes::

    connected? ─▶ command in flight? ─▶ stale? ─▶ new sample since last time?
      ─▶ settling after a switch? ─▶ enough samples in the window?
      ─▶ policy.decide(view) ─▶ target alive, accepting, with room? ─▶ dwell over?
      ─▶ migrate (logged, counted, pushed to the client)

Every step that stops a policy's proposal (or a policy that holds because of
hysteresis) is logged as a ``hold`` with its reason; the quiet steps (no new
sample, settling, too few samples) are not, because nothing was crossed.
Safeguards, for every policy alike:

* minimum dwell time between two switches of one player (``min_dwell_s``),
  counted from the last switch *or* the last command;
* samples within ``settle_s`` of a switch are not used (they describe the
  switch, not the new placement), and the FPS window starts afresh;
* stale telemetry (nothing for ``stale_s``), missing samples (fewer than
  ``min_samples`` in the window, or no new sample) never trigger anything;
* a dead, draining, full or unknown node is never a target, and a node that
  just failed this client (rollback, fallback, timeout) is avoided for
  ``penalty_s``;
* one command in flight per client: the next evaluation waits for its report.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.config import EngineConfig
from scheduler.decisions import DecisionLog
from scheduler.messages import (
    DEVICE,
    Migrate,
    MigrationReport,
    NodeStatus,
    Register,
    Telemetry,
    mode_of,
)
from scheduler.policies import Candidate, ClientView, Policy, PolicySpec
from scheduler.registry import ClientRecord, NodeRecord, Pending, Registry
from scheduler.smoothing import _r

MAX_DECISION_ID = 2**32 - 1
# Send a migrate to a client; False when it cannot be delivered (not connected, outbox full).
Sender = Callable[[str, Migrate], bool]
# Record one observation for a histogram: "gap", "duration" (reported) or "evaluation" (s).
Observer = Callable[[str, float], None]


class ManualError(Exception):
    """A manual migration that cannot be done: ``status`` is the HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(slots=True)
class EngineStats:
    """Totals since start; /metrics publishes them (scheduler.metrics)."""

    samples: int = 0
    samples_ignored: int = 0  # duplicates, reordered
    evaluations: int = 0
    decisions: Tally[tuple[str, str, str]] = field(default_factory=Tally)  # from, to, reason
    holds: Tally[str] = field(default_factory=Tally)  # by reason
    reports: Tally[str] = field(default_factory=Tally)  # by outcome


class Engine:
    def __init__(
        self,
        cfg: EngineConfig,
        policy: PolicySpec,
        log: DecisionLog | None = None,
        send: Sender | None = None,
        observe: Observer | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.spec = policy
        self.factory = policy.factory()
        self.log = log if log is not None else DecisionLog()
        self.send = send
        self.observe = observe
        self.registry = Registry(cfg.node_timeout_s, cfg.window_s)
        self.policies: dict[str, Policy] = {}
        self.stats = EngineStats()
        self._next_id = 1
        self._evaluated: dict[str, int] = {}  # client -> sample count at its last evaluation
        self._locations: dict[str, str] = {DEVICE: "device"}  # outlives forgotten nodes
        self._alive: set[str] = set()

    # -- peers -----------------------------------------------------------------------
    def register(self, msg: Register, now: float, conn: int = 0) -> NodeRecord | ClientRecord:
        if msg.role == "render-node":
            node = self.registry.register_node(msg, now, conn)
            self._locations[node.name] = node.location
            return node
        c = self.registry.register_client(msg, now, conn)
        c.recent = type(c.recent)(c.recent, maxlen=self.cfg.recent_decisions)
        return c

    def disconnect(self, role: str, name: str, now: float, conn: int = 0) -> None:
        if role == "render-node":
            self.registry.node_gone(name, conn)
            return
        c = self.registry.clients.get(name)
        self.registry.client_gone(name, now, conn)
        if c is not None and not c.connected and c.pending is not None:
            # The command may or may not have arrived; its report (if any) comes
            # after the reconnect, and the telemetry says where the client is.
            p, c.pending = c.pending, None
            node = self.registry.nodes.get(p.target)
            if node is not None:
                node.release(c.name)
            self._log("timeout", c, now, "disconnected", to=p.target, decision=p.decision)

    def node_status(self, name: str, msg: NodeStatus, now: float) -> None:
        self.registry.node_status(name, msg, now)

    def telemetry(self, name: str, msg: Telemetry, now: float) -> bool:
        """Ingest one sample; False if it was ignored (duplicate or reordered)."""
        c = self.registry.clients[name]
        sm = c.smoother
        if msg.seq <= sm.last_seq:
            self.stats.samples_ignored += 1
            return False
        if sm.placement is None:
            c.placement = msg.node  # the first sample says where the client starts
        elif msg.node != c.placement:
            self._switched(c, msg.node, now)
        sm.add(msg, now, settling=now < c.settle_until)
        self.stats.samples += 1
        return True

    def report(self, name: str, msg: MigrationReport, now: float) -> None:
        c = self.registry.clients[name]
        st = self.stats
        st.reports[msg.outcome] += 1
        if self.observe is not None:
            if msg.gap_ms is not None:
                self.observe("gap", msg.gap_ms / 1000.0)
            if msg.duration_ms is not None:
                self.observe("duration", msg.duration_ms / 1000.0)
        p = c.pending
        matched = p is not None and msg.decision == p.decision
        if matched:
            c.pending = None
        detail: dict[str, Any] = {
            "outcome": msg.outcome,
            "gap_ms": msg.gap_ms,
            "duration_ms": msg.duration_ms,
            "client_reason": msg.reason,
            "matched": matched,
        }
        if msg.decision and not matched:
            detail["note"] = "no command of this id in flight (late or unknown)"
        self._log(
            "report",
            c,
            now,
            msg.outcome,
            to=msg.to_node,
            decision=msg.decision or None,
            detail=detail,
            origin=msg.from_node,
        )
        target = self.registry.nodes.get(msg.to_node)
        if msg.outcome == "ok":
            if target is not None:
                # The node counts the session in its next status; until then, reserve.
                target.reserve(c.name, now, 2 * self.cfg.telemetry_interval_s + 1.0)
            if c.placement != msg.to_node:
                self._switched(c, msg.to_node, now)
            return
        if msg.outcome == "fallback":
            # The node stopped sending frames; the client is back on the device.
            self._penalise(c, msg.from_node, now)
            if c.placement != msg.to_node:
                self._switched(c, msg.to_node, now)
            return
        # rollback / failed: the client stayed where it was; do not retry that target soon.
        if target is not None:
            target.release(c.name)
        self._penalise(c, msg.to_node, now)

    # -- evaluation --------------------------------------------------------------------
    def tick(self, now: float) -> list[Migrate]:
        """Housekeeping and one evaluation of every client with news."""
        self._watch_nodes(now)
        self.registry.forget(now, self.cfg.forget_after_s)
        for name in list(self.policies):
            if name not in self.registry.clients:
                del self.policies[name]
                self._evaluated.pop(name, None)
        out = []
        for c in list(self.registry.clients.values()):
            msg = self.evaluate(c, now)
            if msg is not None:
                out.append(msg)
        return out

    def evaluate(self, c: ClientRecord, now: float) -> Migrate | None:
        cfg = self.cfg
        if not c.connected:
            return None
        if c.pending is not None:
            if now - c.pending.sent_at <= cfg.pending_timeout_s:
                return None  # one command at a time
            self._timeout(c, now)
        sm = c.smoother
        if sm.staleness.stale(now, cfg.stale_s):
            if not c.stale and sm.samples:
                c.stale = True
                self._hold(c, now, "stale", None, {"age_s": _r(sm.staleness.age(now))}, None)
            return None
        c.stale = False
        if self._evaluated.get(c.name) == sm.samples:
            return None  # nothing new: re-deciding on old data would count it twice
        self._evaluated[c.name] = sm.samples
        if now < c.settle_until or sm.fps.count(now) < cfg.min_samples:
            return None
        t0 = time.perf_counter()
        view = self.view(c, now)
        policy = self.policies.get(c.name)
        if policy is None:
            policy = self.policies[c.name] = self.factory()
        verdict = policy.decide(view)
        self.stats.evaluations += 1
        if self.observe is not None:
            self.observe("evaluation", time.perf_counter() - t0)
        if verdict is None:
            return None
        if verdict.target is None or verdict.target == c.placement:
            self._hold(c, now, verdict.reason, None, verdict.detail, view)
            return None
        problem = self.unavailable(c, verdict.target, now)
        if problem is not None:
            detail = {**verdict.detail, "proposed_reason": verdict.reason, "problem": problem}
            self._hold(c, now, "target_unavailable", verdict.target, detail, view)
            return None
        times = [t for t in (c.last_switch_at, c.last_command_at) if t is not None]
        last = max(times, default=None)
        if last is not None and now - last < cfg.min_dwell_s:
            detail = {
                **verdict.detail,
                "proposed_reason": verdict.reason,
                "dwell_left_s": round(cfg.min_dwell_s - (now - last), 3),
            }
            self._hold(c, now, "dwell", verdict.target, detail, view)
            return None
        return self._command(c, verdict.target, verdict.reason, now, verdict.detail, view)

    def manual(self, client: str, target: str, now: float) -> Migrate:
        """An operator's migration: same command path and log, no policy, no dwell."""
        c = self.registry.clients.get(client)
        if c is None:
            raise ManualError("unknown_client", f"no client named {client!r}", 404)
        if not c.connected:
            raise ManualError("not_connected", f"client {client!r} is not connected")
        target = DEVICE if target == "local" else target
        if c.pending is not None:
            raise ManualError(
                "in_flight", f"decision {c.pending.decision} to {c.pending.target!r} is in flight"
            )
        if target == c.placement:
            raise ManualError("already_there", f"{client!r} already renders on {target!r}")
        problem = self.unavailable(c, target, now, manual=True)
        if problem is not None:
            status = 404 if problem.startswith("unknown") else 409
            raise ManualError("target_unavailable", f"{target!r}: {problem}", status)
        msg = self._command(c, target, "manual", now, {"manual": True}, self.view(c, now))
        if msg is None:
            raise ManualError("unreachable", f"cannot send to {client!r}", 503)
        return msg

    # -- what policies see ------------------------------------------------------------
    def predict_rtt(
        self, c: ClientRecord, node: NodeRecord, now: float
    ) -> tuple[float | None, str]:
        est = c.smoother.rtt_nodes.get(node.name)
        if est is not None and est.samples and est.age(now) <= self.cfg.rtt_max_age_s:
            return est.predict(self.cfg.rtt_k), "measured"
        default = self.cfg.default_rtt_ms.get(node.location)
        return (default, "default") if default is not None else (None, "")

    def candidates(self, c: ClientRecord, now: float) -> list[Candidate]:
        cfg = self.cfg
        sm = c.smoother
        out = []
        if c.can_local or c.placement == DEVICE:
            lf = sm.local_fps
            out.append(
                Candidate(
                    DEVICE,
                    "device",
                    current=c.placement == DEVICE,
                    fps=None if lf is None else lf.value,
                    measured_fps=None if lf is None else lf.value,
                    measured_age_s=None if lf is None else lf.age(now),
                    cost=cfg.location_cost.get("device", 0.0),
                )
            )
        bitrate = c.bitrate_bps or cfg.default_bitrate_bps
        downlink = sm.downlink.value
        for node in self.registry.alive_nodes(now):
            current = node.name == c.placement
            if not current and (
                not c.can_remote
                or not node.accepting
                or c.penalised(node.name, now)
                or not node.has_room_for(c.name, now)
            ):
                continue
            rtt, source = self.predict_rtt(c, node, now)
            if current:
                # Our stream already flows (and is not in the node's spare uplink):
                # it only has to fit the client's downlink.
                bw = downlink
                bw_ok = bw is None or bw >= bitrate
            else:
                known = [b for b in (downlink, node.uplink_bps) if b is not None]
                bw = min(known) if known else None
                bw_ok = bw is None or bw >= cfg.bandwidth_factor * bitrate
            cost = node.cost if node.cost is not None else cfg.location_cost.get(node.location, 1.0)
            mem = sm.fps_memory.get(node.name)
            out.append(
                Candidate(
                    node.name,
                    node.location,
                    current=current,
                    rtt_ms=rtt,
                    rtt_source=source,
                    bandwidth_bps=bw,
                    bandwidth_ok=bw_ok,
                    free=max(0, node.capacity - node.load(now)),
                    fps=node.fps,
                    measured_fps=None if mem is None else mem.value,
                    measured_age_s=None if mem is None else mem.age(now),
                    encode_ms=node.encode_ms,
                    cost=cost,
                )
            )
        return out

    def view(self, c: ClientRecord, now: float) -> ClientView:
        sm = c.smoother
        rtt_node = None
        if c.placement != DEVICE:
            est = sm.rtt_nodes.get(c.placement)
            if est is not None and est.age(now) <= self.cfg.rtt_max_age_s:
                rtt_node = est.predict(self.cfg.rtt_k)
        local = sm.power_by_placement.get("local")
        remote = sm.power_by_placement.get("remote")
        return ClientView(
            name=c.name,
            now=now,
            placement=c.placement,
            location=self.location(c.placement),
            samples=sm.fps.count(now),
            fps_median=sm.fps_median(now),
            fps_p10=sm.fps_p10(now),
            frame_p95_ms=sm.frame_p95.percentile(50, now),
            rtt_sim_ms=sm.rtt_sim.srtt,
            rtt_node_ms=rtt_node,
            battery_level=sm.battery_level(now),
            battery_charging=sm.battery_charging,
            battery_draining=sm.battery_draining(now),
            power_local_w=None if local is None else local.value,
            power_remote_w=None if remote is None else remote.value,
            cpu=sm.cpu.value,
            local_fps=None if sm.local_fps is None else sm.local_fps.value,
            local_fps_age_s=None if sm.local_fps is None else sm.local_fps.age(now),
            since_switch_s=None if c.last_switch_at is None else now - c.last_switch_at,
            candidates=tuple(self.candidates(c, now)),
        )

    def unavailable(
        self, c: ClientRecord, target: str, now: float, manual: bool = False
    ) -> str | None:
        """Why ``target`` cannot take this client now, or None."""
        if target == DEVICE:
            return None if c.can_local else "the client cannot render locally"
        node = self.registry.nodes.get(target)
        if node is None:
            return "unknown node"
        if not c.can_remote:
            return "the client cannot play a stream"
        if not node.alive(now, self.cfg.node_timeout_s):
            return "node is dead (no heartbeat)" if node.connected else "node disconnected"
        if not node.accepting:
            return "node is draining"
        if not node.has_room_for(c.name, now):
            return f"node is full ({node.load(now)}/{node.capacity})"
        if not manual and c.penalised(target, now):
            return "node failed this client recently"
        return None

    def location(self, placement: str | None) -> str:
        if placement is None:
            return "none"
        node = self.registry.nodes.get(placement)
        if node is not None:
            return node.location
        return self._locations.get(placement, "unknown")

    # -- internals -------------------------------------------------------------------
    def _switched(self, c: ClientRecord, placement: str, now: float) -> None:
        """The client renders somewhere else now (its report or its telemetry says so)."""
        c.placement = placement
        c.last_switch_at = now
        c.settle_until = now + self.cfg.settle_s
        c.switches += 1
        c.smoother.placement_changed(placement, now)

    def _penalise(self, c: ClientRecord, node: str, now: float) -> None:
        if node != DEVICE and self.cfg.penalty_s > 0:
            c.penalties[node] = now + self.cfg.penalty_s

    def _timeout(self, c: ClientRecord, now: float) -> None:
        p = c.pending
        assert p is not None
        c.pending = None
        node = self.registry.nodes.get(p.target)
        if node is not None:
            node.release(c.name)
        self._penalise(c, p.target, now)
        self.stats.reports["timeout"] += 1
        detail = {"sent_s_ago": round(now - p.sent_at, 3), "reason": p.reason}
        self._log("timeout", c, now, "no_report", to=p.target, decision=p.decision, detail=detail)

    def _command(
        self,
        c: ClientRecord,
        target: str,
        reason: str,
        now: float,
        detail: dict[str, Any],
        view: ClientView | None,
    ) -> Migrate | None:
        decision = self._next_id
        self._next_id = self._next_id % MAX_DECISION_ID + 1
        node = self.registry.nodes.get(target)
        msg = Migrate(
            decision=decision,
            mode=mode_of(target),
            node=target,
            url=node.url if node is not None else "",
            location=self.location(target) if target != DEVICE else "device",
            reason=reason[:64],
        )
        if self.send is not None and not self.send(c.name, msg):
            self._hold(c, now, "unreachable", target, detail, view)
            return None
        c.pending = Pending(decision, target, now, reason)
        c.last_command_at = now
        if node is not None:
            node.reserve(c.name, now, self.cfg.pending_timeout_s + 5.0)
        self.stats.decisions[(self.location(c.placement), msg.location, reason)] += 1
        self._log("migrate", c, now, reason, to=target, decision=decision, detail=detail, view=view)
        return msg

    def _hold(
        self,
        c: ClientRecord,
        now: float,
        reason: str,
        target: str | None,
        detail: dict[str, Any],
        view: ClientView | None,
    ) -> None:
        self.stats.holds[reason] += 1
        event = "stale" if reason == "stale" else "hold"
        self._log(event, c, now, reason, to=target, detail=detail, view=view)

    def _watch_nodes(self, now: float) -> None:
        """Log nodes coming alive and dying (heartbeat or connection lost)."""
        alive = {n.name for n in self.registry.alive_nodes(now)}
        for name in sorted(alive - self._alive):
            node = self.registry.nodes[name]
            rec = self._record(
                "node_up", now, reason="heartbeat", node=name, location=node.location
            )
            rec["capacity"] = node.capacity
            self.log.write(rec)
        for name in sorted(self._alive - alive):
            node = self.registry.nodes.get(name)
            why = "disconnected" if node is None or not node.connected else "heartbeat_timeout"
            self.log.write(self._record("node_down", now, reason=why, node=name))
        self._alive = alive

    def _record(self, event: str, now: float, **fields: Any) -> dict[str, Any]:
        return {"ts": round(time.time(), 3), "t": round(now, 3), "event": event, **fields}

    def _log(
        self,
        event: str,
        c: ClientRecord,
        now: float,
        reason: str,
        *,
        to: str | None = None,
        decision: int | None = None,
        detail: dict[str, Any] | None = None,
        view: ClientView | None = None,
        origin: str | None = None,
    ) -> None:
        frm = origin if origin is not None else c.placement
        rec = self._record(
            event,
            now,
            decision=decision,
            client=c.name,
            policy=self.spec.label,
            reason=reason,
            **{"from": frm, "to": to},
            from_location=self.location(frm),
            to_location=None if to is None else self.location(to),
            detail=detail or {},
            inputs=None if view is None else view.to_log(),
        )
        self.log.write(rec)
        c.recent.append({k: rec[k] for k in ("t", "event", "decision", "from", "to", "reason")})

    # -- state --------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        st = self.stats
        return {
            "policy": self.spec.label,
            "params": dataclasses.asdict(self.spec.params),
            "engine": dataclasses.asdict(self.cfg),
            **self.registry.snapshot(now),
            "decisions": [
                {k: r.get(k) for k in ("t", "event", "decision", "client", "from", "to", "reason")}
                for r in list(self.log.recent)[-50:]
            ],
            "totals": {
                "samples": st.samples,
                "samples_ignored": st.samples_ignored,
                "evaluations": st.evaluations,
                "decisions": sum(st.decisions.values()),
                "holds": dict(st.holds),
                "reports": dict(st.reports),
            },
        }
