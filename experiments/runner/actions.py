"""Apply a scenario's timed actions to the running testbed; each lands in the events file.

An action that fails (a node already gone, a client that refuses) is
recorded with ``ok: false`` and its error and the run goes on: a scenario
that kills a node must still be measured afterwards.
"""

from __future__ import annotations

import signal
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

from experiments.runner.collect import Scraper
from experiments.runner.events import EventLog
from experiments.runner.links import conditions
from experiments.runner.nodes import http
from experiments.runner.services import Service
from experiments.scenarios.model import (
    Action,
    Charger,
    Kill,
    LinkSpec,
    Migrate,
    SetBattery,
    SetCpu,
    SetLink,
)
from experiments.testbed.topology import Testbed


@dataclass
class Stage:
    """The running experiment as actions see it."""

    tb: Testbed
    services: dict[str, Service]
    scraper: Scraper | None  # set once every node is up
    events: EventLog
    links: dict[frozenset[str], LinkSpec] = field(default_factory=dict)

    def control_url(self, client: str) -> str:
        svc = self.services[client]
        return svc.metrics_url.rsplit("/", 1)[0] + "/control"


async def set_link(stage: Stage, a: str, b: str, link: LinkSpec) -> None:
    cond = conditions(link)
    stage.links[link.key] = link
    await stage.tb.set_link(a, b, cond)
    stage.events.write(
        "link", a=a, b=b, conditions=cond.to_dict(), describe=cond.describe(),
        applied=stage.tb.emulated,
    )  # fmt: skip


async def _apply(stage: Stage, action: Action) -> dict[str, Any]:
    """Do it; return what the events file should say about the outcome."""
    if isinstance(action, SetLink):
        key = frozenset((action.a, action.b))
        current = stage.links.get(key) or LinkSpec(action.a, action.b)
        await set_link(stage, action.a, action.b, current.updated(action.changes))
        return {"applied": stage.tb.emulated}
    if isinstance(action, SetCpu):
        limit = stage.services[action.client].cpu
        if limit is None:
            raise RuntimeError(f"client {action.client} has no CPU limit (cgroups unavailable)")
        limit.set_share(action.share)
        return {}
    if isinstance(action, SetBattery):
        status, body = await http(
            stage.control_url(action.client), data={"battery_level": action.level}
        )
        return _answer(status, body)
    if isinstance(action, Charger):
        status, body = await http(
            stage.control_url(action.client), data={"charger": action.plugged}
        )
        return _answer(status, body)
    if isinstance(action, Migrate):
        # Through the scheduler, so the switch is a decision like any other (logged
        # with reason "manual", dwell not applied); the client's /control is the
        # fallback when the scheduler is gone.
        sched = stage.services.get("scheduler")
        to = "local" if action.to == "device" else action.to
        if sched is not None and sched.running:
            base = sched.metrics_url.rsplit("/", 1)[0]
            query = urllib.parse.urlencode({"client": action.client, "to": to})
            status, body = await http(f"{base}/migrate?{query}")
            return {"via": "scheduler", **_answer(status, body)}
        status, body = await http(stage.control_url(action.client), data={"migrate": to})
        return {"via": "client", **_answer(status, body)}
    if isinstance(action, Kill):
        svc = stage.services[action.node]
        if not svc.running:
            raise RuntimeError(f"{action.node} is not running (exit code {svc.proc.returncode})")
        svc.killed = True
        svc.send(signal.SIGKILL)  # a crash: no shutdown code runs
        if stage.scraper is not None:
            stage.scraper.remove(action.node)
        return {"pid": svc.pid}
    raise TypeError(f"unknown action {type(action).__name__}")


def _answer(status: int, body: dict) -> dict[str, Any]:
    if status >= 400:
        raise RuntimeError(f"HTTP {status}: {body}")
    return {"status": status, "answer": body}


async def apply(stage: Stage, action: Action) -> bool:
    fields = {k: v for k, v in asdict(action).items() if k not in ("at_s", "line")}
    kind = action.kind
    if isinstance(action, Charger):
        kind = "plug" if action.plugged else "unplug"
    try:
        outcome = await _apply(stage, action)
    except Exception as exc:
        stage.events.write(
            "action", action=kind, at_s=action.at_s, line=action.line, ok=False,
            error=f"{type(exc).__name__}: {exc}", **fields,
        )  # fmt: skip
        return False
    stage.events.write(
        "action", action=kind, at_s=action.at_s, line=action.line, ok=True, **outcome, **fields
    )
    return True
