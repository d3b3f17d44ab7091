"""`ClientAgent`: what runs beside the game loop in ``shiftcraft play``.

DESIGN calls it the client's telemetry agent. It owns

* the `MigrationController` (always there: F6, ``--migrate-at``, the
  scheduler and ``POST /control`` all switch through it);
* the battery (`client.device`) and the `TelemetryCollector`, collecting
  once a second;
* the `SchedulerLink` (``--scheduler``): samples out, ``migrate`` in, every
  switch report back with the decision id of the command that caused it;
  and a `NodeProber` timing a TCP handshake with every known node every
  2 s (``Telemetry.probes``);
* the HTTP endpoint (``--metrics-port``, `client.metrics_http`).

Usage (cli.py)::

    agent = ClientAgent(game)
    async with agent:          # binds the port, starts the tasks
        code = await game.run()
    # leaving the block stops every task, closes the link and the port

Node names: the controller switches to ``"local"`` or a name in its
``nodes`` map. The scheduler calls local rendering ``"device"``; a URL given
by hand (``/control``, ``--migrate-at``) gets a name derived from it, so
telemetry and reports always carry a valid node name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from client.config import LOCAL_TARGETS, NODE_URL_PREFIXES
from client.device import Battery, BatteryControlError, RealBattery, make_battery
from client.metrics_http import ControlError, Handlers, MetricsServer
from client.migration import LOCAL, MigrationController, MigrationState
from client.telemetry import ClientMetrics, NodeProber, TelemetryCollector
from scheduler.agent import LinkFailed, SchedulerLink
from scheduler.messages import DEVICE, Migrate, MigrationReport

log = logging.getLogger("shiftcraft.client.agent")

RENDER_NODE_NAME = "node"  # the name `--render-node URL` gets among the nodes
CONTROL_KEYS = ("battery_level", "charger", "migrate")


def placement(node: str) -> str:
    """The controller's name for a place -> the scheduler's (``local`` -> ``device``)."""
    return DEVICE if node == LOCAL else node


class ClientAgent:
    def __init__(self, game: Any) -> None:
        self.game = game
        cfg = game.config
        nodes = dict(cfg.nodes)
        if cfg.render_node and cfg.render_node not in nodes.values():
            nodes.setdefault(RENDER_NODE_NAME, cfg.render_node)
        ctl = game.migration
        if ctl is None:
            ctl = MigrationController(game, nodes=nodes, timeout_s=cfg.migration_timeout_s)
            game.migration = ctl
        else:
            for name, url in nodes.items():
                ctl.nodes.setdefault(name, url)
        if cfg.scheduler:
            ctl.preload_remote()  # it may send us to a node at any moment
        self.controller = ctl
        self._chained_report = ctl.on_report
        ctl.on_report = self._on_report
        self.battery: Battery | RealBattery | None = make_battery(
            cfg.device, level=cfg.battery_level, charging=cfg.charging,
            capacity_j=cfg.battery_capacity_j,
        )  # fmt: skip
        self.metrics = ClientMetrics()
        # RTT to the nodes the client could move to, for the scheduler's placement;
        # only worth the connections when a scheduler listens.
        self.prober = NodeProber(lambda: ctl.nodes) if cfg.scheduler else None
        self.collector = TelemetryCollector(
            game, battery=self.battery, metrics=self.metrics, prober=self.prober
        )
        self.link: SchedulerLink | None = None
        if cfg.scheduler:
            self.link = SchedulerLink.client(
                cfg.scheduler,
                cfg.name,
                token=cfg.scheduler_token,
                bitrate_bps=min(cfg.stream_bitrate, 100_000_000),
                sample=self.collector.sample,
                on_migrate=self.on_migrate,
            )
            link = self.link
            self.metrics.scheduler_connected = lambda: link.registered.is_set()
        self.http: MetricsServer | None = None
        if cfg.metrics_port:
            self.http = MetricsServer(
                Handlers(
                    metrics=self.metrics.exposition,
                    health=self.health,
                    state=self.state,
                    control=self.control,
                ),
                cfg.metrics_host,
                cfg.metrics_port,
            )
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the HTTP port (OSError if taken) and start the background tasks."""
        if self.http is not None:
            await self.http.start()
            self.game.log(f"client metrics and control on {self.http.url}")
        self._tasks.append(asyncio.create_task(self.collector.run(), name="telemetry"))
        if self.link is not None:
            self._tasks.append(asyncio.create_task(self._run_link(), name="scheduler-link"))
        if self.prober is not None:
            self._tasks.append(asyncio.create_task(self.prober.run(), name="node-probes"))
        if self.game.config.migrate_at:
            self._tasks.append(asyncio.create_task(self._scripted(), name="migrate-at"))

    async def stop(self) -> None:
        if self.link is not None:
            self.link.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.http is not None:
            await self.http.stop()

    async def __aenter__(self) -> ClientAgent:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run_link(self) -> None:
        assert self.link is not None
        try:
            await self.link.run()
        except LinkFailed as exc:
            # Playing does not need the scheduler: say why, keep playing.
            self.game.log(f"scheduler refused this client ({exc}); playing without it")

    async def _scripted(self) -> None:
        """``--migrate-at``: switch at these times after the frame loop started."""
        g = self.game
        while not g.frames:  # the loop has not started (warm-up, connecting)
            await asyncio.sleep(0.05)
        for at, target in sorted(g.config.migrate_at):
            delay = g.started_at + at - g.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self.controller.request(self.resolve(target), "script")
            except ControlError as exc:
                g.log(f"--migrate-at {at:g}:{target}: {exc.message}")

    # -- targets -------------------------------------------------------------------------
    def resolve(self, target: str) -> str:
        """``local``/``device``, a node name or a URL -> the controller's name for it."""
        ctl = self.controller
        if target in LOCAL_TARGETS:
            return LOCAL
        if target in ctl.nodes:
            return target
        if target.startswith(NODE_URL_PREFIXES):
            for name, url in ctl.nodes.items():
                if url == target:
                    return name
            name = self._name_for(target)
            ctl.nodes[name] = target
            return name
        known = ", ".join(["local", *ctl.nodes])
        raise ControlError(
            400, "unknown_node", f"unknown node {target!r} (known: {known}, or a URL)"
        )

    def _name_for(self, url: str) -> str:
        u = urlsplit(url)
        base = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{u.hostname or 'node'}-{u.port or ''}".strip("-"))
        base = base[:28] or "node"
        name, i = base, 2
        while name in self.controller.nodes or name in LOCAL_TARGETS:
            name = f"{base}-{i}"
            i += 1
        return name

    def _idle_at(self, target: str) -> bool:
        """Already rendering at ``target`` with nothing queued or in flight."""
        ctl = self.controller
        return (
            ctl.node == target
            and ctl.state is MigrationState.STEADY
            and ctl.current is None
            and not ctl._pending
        )

    # -- the scheduler ---------------------------------------------------------------------
    def on_migrate(self, msg: Migrate) -> None:
        """A ``migrate`` command: queue the switch; its report carries ``msg.decision``."""
        ctl = self.controller
        if msg.node == DEVICE:
            target = LOCAL
        else:
            target = msg.node
            if msg.url:
                ctl.nodes[target] = msg.url  # the scheduler knows nodes we were not told of
            elif target not in ctl.nodes:
                self._report(msg.decision, "failed", ctl.node, target, "no URL for this node")
                return
        if self._idle_at(target):
            self._report(msg.decision, "ok", target, target, "already rendering there", 0.0, 0.0)
            return
        ctl.request(target, f"scheduler:{msg.decision}")

    def _on_report(self, report: dict[str, Any]) -> None:
        self.metrics.observe_report(report)
        trigger = str(report.get("trigger", ""))
        decision = 0
        if trigger.startswith("scheduler:"):
            with contextlib.suppress(ValueError):
                decision = int(trigger.split(":", 1)[1])
        self._report(
            decision,
            str(report["outcome"]),
            str(report["from"]),
            str(report["target"]),
            str(report.get("reason", "")),
            report.get("gap_ms"),
            report.get("duration_ms"),
        )
        if self._chained_report is not None:
            self._chained_report(report)

    def _report(
        self,
        decision: int,
        outcome: str,
        source: str,
        target: str,
        reason: str,
        gap_ms: float | None = None,
        duration_ms: float | None = None,
    ) -> None:
        if self.link is None:
            return
        self.link.report(
            MigrationReport(
                decision=decision,
                outcome=outcome,
                from_node=placement(source),
                to_node=placement(target),
                reason=reason[:256],
                gap_ms=None if gap_ms is None else min(float(gap_ms), 1e6),
                duration_ms=None if duration_ms is None else min(float(duration_ms), 1e6),
            )
        )

    # -- HTTP ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        g, ctl = self.game, self.controller
        mode = "local" if ctl.node == LOCAL else "remote"
        return {
            "status": "ok",
            "name": g.config.name,
            "mode": mode,
            "node": placement(ctl.node),
            "migration": ctl.state.value,
            "sim": g.session.state.value,
            "playing": bool(g.playing),
            "scheduler": None if self.link is None else self.link.state.value,
        }

    def state(self) -> dict[str, Any]:
        ctl = self.controller
        snap = self.collector.latest
        sw = ctl.current
        return {
            **self.health(),
            "nodes": dict(ctl.nodes),
            "switching_to": None if sw is None else placement(sw.target),
            "queued": [placement(t) for t, _ in ctl._pending],
            "telemetry": None if snap is None else snap.as_dict(),
            "reports": ctl.reports[-20:],
            "switches_total": len(ctl.reports),
            "battery": self._battery_dict(),
            "player": self._player_dict(),
        }

    def _player_dict(self) -> dict[str, Any]:
        g = self.game
        st = g.replica.stats
        p = g.predictor
        return {
            "pos": None if p is None else [round(v, 3) for v in (p.body.x, p.body.y, p.body.z)],
            # The sim's word on where we are (and the newest input it applied).
            "server_pos": None if g.server_state is None else list(g.server_state[2]),
            "ack": None if g.server_state is None else g.server_state[1],
            "edits_sent": g.edits_sent,
            "edits_confirmed": st.edits_confirmed,
            "edits_rejected": st.edits_rejected,
        }

    def _battery_dict(self) -> dict[str, Any] | None:
        if self.battery is None:
            return None
        r = self.battery.reading()
        return {"level": r.level, "charging": r.charging, "power_w": r.power_w, "source": r.source}

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /control``: every key checked first, then all applied (or none)."""
        unknown = sorted(str(k) for k in body if k not in CONTROL_KEYS)
        if unknown:
            raise ControlError(
                400,
                "unknown_key",
                f"unknown key(s) {', '.join(unknown)}; use {', '.join(CONTROL_KEYS)}",
            )
        if not body:
            raise ControlError(
                400, "empty", f"nothing to do: give any of {', '.join(CONTROL_KEYS)}"
            )
        level = body.get("battery_level")
        if "battery_level" in body and (
            isinstance(level, bool)
            or not isinstance(level, int | float)
            or not 0.0 <= float(level) <= 1.0
        ):
            raise ControlError(
                400, "bad_value", f"battery_level must be a number within 0..1, got {level!r}"
            )
        charger = body.get("charger")
        if "charger" in body and not isinstance(charger, bool):
            raise ControlError(400, "bad_value", f"charger must be true or false, got {charger!r}")
        target = body.get("migrate")
        if "migrate" in body and (not isinstance(target, str) or not target):
            raise ControlError(
                400, "bad_value", f'migrate must be "local", a node name or a URL, got {target!r}'
            )
        if ("battery_level" in body or "charger" in body) and not isinstance(self.battery, Battery):
            why = (
                "this client reads a real battery, which cannot be changed"
                if isinstance(self.battery, RealBattery)
                else "this client models no battery: start it with --device PROFILE "
                "or --battery-level"
            )
            raise ControlError(409, "no_battery_model", why)
        resolved = None
        if target is not None:
            resolved = self.resolve(target)  # 400 unknown_node before anything changes
        out: dict[str, Any] = {"ok": True}
        try:
            if self.battery is not None and "battery_level" in body:
                self.battery.set_level(float(level))  # type: ignore[arg-type]
            if self.battery is not None and "charger" in body:
                self.battery.plug(bool(charger))
        except (BatteryControlError, ValueError) as exc:
            raise ControlError(409, "no_battery_model", str(exc)) from None
        if "battery_level" in body or "charger" in body:
            snap = self.collector.latest
            if snap is not None and self.battery is not None:
                snap.battery = self.battery.reading()  # /metrics shows it at once
            out["battery"] = self._battery_dict()
        if resolved is not None:
            if self._idle_at(resolved):
                out["migrate"] = {"requested": placement(resolved), "already_there": True}
            else:
                self.controller.request(resolved, "control")
                out["migrate"] = {"requested": placement(resolved), "already_there": False}
            out["migrate"]["url"] = self.controller.nodes.get(resolved, "")
        ctl = self.controller
        out["node"] = placement(ctl.node)
        out["migration"] = ctl.state.value
        return out
