"""Scenario files -> `Scenario`, with every problem reported as ``file:line: where: what``.

The validator reads the whole file and collects every problem before it
gives up, so one run of ``shiftcraft experiment validate`` lists them all:

* unknown keys, with a did-you-mean (``latncy`` -> ``latency``);
* values without units or with the wrong kind of unit (``latency: 20``,
  ``latency: 20mbit``), negative values, out-of-range ratios;
* impossible topologies: a client on an undefined render node, a link
  between locations where nothing is, ``static:NODE`` naming no node, an
  action on a client, link or node that does not exist;
* actions timed beyond the duration.

Policy parameters are checked by the scheduler's own code
(`scheduler.policies.parse_policy`, `scheduler.config.EngineConfig`), so a
scenario accepts exactly what ``shiftcraft scheduler --config`` accepts.
Things that are legal but probably not meant (a sweep repeated fewer than
three times) are *warnings*: reported, not fatal.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.scenarios import model as M
from experiments.scenarios.checks import (
    NAME_RE,
    Checker,
    Problem,
    ScenarioError,
    did_you_mean,
    items,
    join,
    show,
)
from experiments.scenarios.source import Mapping, SourceError, line_of, load_yaml

RESOLUTION_RE = re.compile(r"^(\d+)[xX](\d+)$")

TOP_KEYS = (
    "name",
    "description",
    "duration",
    "warmup",
    "repeats",
    "seeds",
    "nodes",
    "links",
    "actions",
)
NODES_KEYS = ("sim", "render", "scheduler", "clients", "bots")
SIM_KEYS = ("location", "generator", "seed", "view_distance", "tps")
RENDER_KEYS = ("name", "location", "capacity", "cpu_share")
SCHEDULER_KEYS = ("policy", "params", "engine", "variants")
VARIANT_KEYS = ("name", "policy", "params", "engine")
CLIENT_KEYS = (
    "name", "device", "location", "cpu_share", "battery", "mode", "node", "resolution",
    "max_fps", "script",
)  # fmt: skip
BATTERY_KEYS = {  # key -> (kind, model field)
    "capacity": ("energy", "capacity_j"),
    "level": ("percent", "level"),
    "charging": ("bool", "charging"),
    "idle": ("power", "idle_w"),
    "screen": ("power", "screen_w"),
    "cpu": ("power", "cpu_w"),
    "radio": ("energy_per_data", "radio_j_per_mb"),
    "charger": ("power", "charger_w"),
}
BOT_KEYS = ("name", "count", "behaviour", "join_rate", "render", "location", "options")
LINK_KEYS = ("between", "latency", "jitter", "loss", "bursty_loss", "bandwidth")
BURSTY_KEYS = ("p", "r", "bad_loss", "good_loss")
ACTION_KINDS = ("set_link", "set_cpu", "set_battery", "unplug", "plug", "migrate", "kill")
KILLABLE_SERVICES = ("sim", "scheduler")
# Bot options that are durations (need units); other options are blocks, counts or names.
BOT_DURATION_OPTIONS = ("edit_interval", "trip_every", "trip_after", "tnt_interval")


# -- the parts ----------------------------------------------------------------------
def _sim(c: Checker, m: Mapping | None) -> M.SimSpec:
    spec = M.SimSpec()
    if m is None:
        return spec
    w = "nodes.sim"
    c.keys(m, w, SIM_KEYS)
    spec.location = (
        c.string(m, "location", w, spec.location, choices=M.LOCATIONS_NODE) or spec.location
    )
    spec.generator = (
        c.string(m, "generator", w, spec.generator, choices=M.GENERATORS) or spec.generator
    )
    spec.world_seed = c.integer(m, "seed", w, spec.world_seed)
    spec.view_distance = c.integer(m, "view_distance", w, spec.view_distance, minimum=16)
    spec.tps = c.integer(m, "tps", w, spec.tps, minimum=1)
    return spec


def _render_nodes(c: Checker, nodes: Mapping) -> list[M.RenderNodeSpec]:
    out = []
    for _, item, w, line in items(c, nodes, "render", "nodes"):
        m = c.mapping(item, w, line)
        if m is None:
            continue
        c.keys(m, w, RENDER_KEYS, required=("name", "location"))
        name = c.name(m, "name", w)
        location = c.string(m, "location", w, choices=M.LOCATIONS_NODE)
        if name is None or location is None:
            continue
        if name == M.DEVICE:
            c.error(
                join(w, "name"),
                "a render node may not be called 'device' (that is the client's own)",
                line_of(m, "name"),
            )
        out.append(
            M.RenderNodeSpec(
                name,
                location,
                capacity=c.integer(m, "capacity", w, 4, minimum=1),
                cpu_share=c.quantity(m, "cpu_share", w, "percent", positive=True),
                line=m.line,
            )
        )
    return out


def _policy_check(
    c: Checker,
    label: str,
    params: dict,
    engine: dict,
    where: str,
    line: int | None,
    nodes: list[str],
) -> None:
    from scheduler.config import EngineConfig
    from scheduler.policies import params_from_dict, parse_policy

    if label.startswith("static:"):
        node = label.removeprefix("static:")
        if node not in nodes:
            c.error(
                join(where, "policy"),
                f"static:{node} names no render node{did_you_mean(node, nodes)}"
                + (f"; nodes: {', '.join(nodes)}" if nodes else "; the scenario has none"),
                line,
            )
            return
    kind = label.split(":", 1)[0]
    if params and kind not in ("threshold", "battery", "score"):
        c.error(join(where, "params"), f"policy {label!r} takes no parameters", line)
    try:
        parse_policy(
            label, {kind: dict(params)} if kind in ("threshold", "battery", "score") else {}
        )
    except ValueError as exc:
        c.error(join(where, "policy" if "unknown policy" in str(exc) else "params"), str(exc), line)
    try:
        params_from_dict(EngineConfig, dict(engine), "engine").validate()
    except ValueError as exc:
        c.error(join(where, "engine"), str(exc), line)


def _plain(c: Checker, m: Mapping, key: str, where: str) -> dict:
    if key not in m or m[key] is None:
        return {}
    sub = c.mapping(m[key], join(where, key), line_of(m, key))
    return dict(sub) if sub is not None else {}


def _scheduler(c: Checker, m: Mapping | None, nodes: list[str]) -> M.SchedulerSpec:
    spec = M.SchedulerSpec()
    if m is None:
        return spec
    w = "nodes.scheduler"
    c.keys(m, w, SCHEDULER_KEYS)
    spec.policy = c.string(m, "policy", w, spec.policy) or spec.policy
    spec.params = _plain(c, m, "params", w)
    spec.engine = _plain(c, m, "engine", w)
    seen: dict[str, int | None] = {}
    for _, item, vw, line in items(c, m, "variants", w):
        v = c.mapping(item, vw, line)
        if v is None:
            continue
        c.keys(v, vw, VARIANT_KEYS, required=("name", "policy"))
        name = c.name(v, "name", vw)
        policy = c.string(v, "policy", vw)
        if name is None or policy is None:
            continue
        if name in seen:
            c.error(
                join(vw, "name"),
                f"variant {name!r} twice (first on line {seen[name]})",
                line_of(v, "name"),
            )
        seen[name] = line_of(v, "name")
        # A variant inherits the scheduler's engine settings and may override them.
        variant = M.PolicyVariant(
            name, policy, _plain(c, v, "params", vw), {**spec.engine, **_plain(c, v, "engine", vw)}
        )
        _policy_check(c, policy, variant.params, variant.engine, vw, line_of(v, "policy"), nodes)
        spec.variants.append(variant)
    if not spec.variants:
        _policy_check(c, spec.policy, spec.params, spec.engine, w, line_of(m, "policy"), nodes)
    elif "policy" in m or "params" in m:
        c.error(w, "give either policy/params or variants, not both", m.line)
    return spec


def _resolution(
    c: Checker, m: Mapping, key: str, where: str, default: tuple[int, int]
) -> tuple[int, int]:
    if key not in m:
        return default
    v = m[key]
    match = RESOLUTION_RE.match(v) if isinstance(v, str) else None
    if match is None or int(match.group(1)) < 16 or int(match.group(2)) < 16:
        c.error(
            join(where, key),
            f"expected WIDTHxHEIGHT of at least 16x16 (e.g. 640x360), got {show(v)}",
            line_of(m, key),
        )
        return default
    return int(match.group(1)), int(match.group(2))


def _battery(
    c: Checker, value: Any, where: str, line: int | None, base: M.BatteryModel | None, device: str
) -> M.BatteryModel | None:
    if value is None or value is False or value == "none":
        return None  # battery: none: mains powered
    m = c.mapping(value, where, line)
    if m is None:
        return base
    c.keys(m, where, BATTERY_KEYS)
    if base is None:
        if "capacity" not in m:
            c.error(
                where,
                f"a {device} has no battery by default: give its capacity (e.g. 15Wh)",
                m.line,
            )
            return None
        base = M.BatteryModel(capacity_j=0.0)
    changes: dict[str, Any] = {}
    for key, (kind, attr) in BATTERY_KEYS.items():
        if key not in m:
            continue
        if kind == "bool":
            changes[attr] = c.boolean(m, key, where, getattr(base, attr))
        else:
            v = c.quantity(
                m,
                key,
                where,
                kind,
                positive=(key == "capacity"),
                maximum=1.0 if kind == "percent" else None,
            )
            if v is not None:
                changes[attr] = v
    return dataclasses.replace(base, **changes)


def _clients(c: Checker, nodes: Mapping) -> list[M.ClientSpec]:
    out = []
    for _, item, w, line in items(c, nodes, "clients", "nodes"):
        m = c.mapping(item, w, line)
        if m is None:
            continue
        c.keys(m, w, CLIENT_KEYS, required=("name", "device"))
        name = c.name(m, "name", w)
        device = c.string(m, "device", w, choices=M.DEVICE_PROFILES)
        if name is None or device is None:
            continue
        profile = M.DEVICE_PROFILES[device]
        c.key_lines[join(w, "node")] = line_of(m, "node")
        location = c.name(m, "location", w) if "location" in m else M.DEVICE
        if location in M.LOCATIONS_NODE:
            c.error(
                join(w, "location"),
                f"a client is on a device, not at {location!r};"
                " name its device location (e.g. device or phone-4g)",
                line_of(m, "location"),
            )
        battery = (
            _battery(
                c, m["battery"], join(w, "battery"), line_of(m, "battery"), profile.battery, device
            )
            if "battery" in m
            else (dataclasses.replace(profile.battery) if profile.battery else None)
        )
        out.append(
            M.ClientSpec(
                name,
                device,
                location=location or M.DEVICE,
                cpu_share=c.quantity(m, "cpu_share", w, "percent", profile.cpu_share, positive=True)
                or profile.cpu_share,
                battery=battery,
                mode=c.string(m, "mode", w, "local", choices=M.CLIENT_MODES) or "local",
                node=c.string(m, "node", w),
                resolution=_resolution(c, m, "resolution", w, profile.resolution),
                max_fps=c.number(m, "max_fps", w, 60.0),
                script=c.string(m, "script", w, "") or "",
                line=m.line,
            )
        )
    return out


def _bot_options(c: Checker, m: Mapping, where: str) -> dict[str, Any]:
    from experiments.bots.behaviours import BehaviourOptions

    fields = {f.name: f for f in dataclasses.fields(BehaviourOptions)}
    opts = (
        c.mapping(m["options"], join(where, "options"), line_of(m, "options"))
        if "options" in m
        else None
    )
    if opts is None:
        return {}
    w = join(where, "options")
    c.keys(opts, w, fields)
    out: dict[str, Any] = {}
    defaults = BehaviourOptions()
    for key in opts:
        if key not in fields:
            continue
        if key in BOT_DURATION_OPTIONS:
            v = c.quantity(opts, key, w, "duration")
        else:
            default = getattr(defaults, key)
            if isinstance(default, bool):
                v = c.boolean(opts, key, w, default)
            elif isinstance(default, int):
                v = c.integer(opts, key, w, default)
            elif isinstance(default, str):
                v = c.string(opts, key, w, default)
            else:  # floats and the optional heading
                v = c.number(opts, key, w, 0.0, minimum=None if key == "heading" else 0.0)
        if v is not None:
            out[key] = v
    return out


def _bots(c: Checker, nodes: Mapping) -> list[M.BotGroupSpec]:
    from experiments.bots.behaviours import BEHAVIOURS

    out = []
    for _, item, w, line in items(c, nodes, "bots", "nodes"):
        m = c.mapping(item, w, line)
        if m is None:
            continue
        c.keys(m, w, BOT_KEYS, required=("name", "count"))
        name = c.name(m, "name", w)
        if name is None:
            continue
        group = M.BotGroupSpec(
            name,
            count=c.integer(m, "count", w, 0, minimum=0),
            behaviour=c.string(m, "behaviour", w, "walk", choices=sorted(BEHAVIOURS)) or "walk",
            join_rate=c.quantity(m, "join_rate", w, "frequency", 5.0, positive=True) or 5.0,
            render=c.string(m, "render", w, "none", choices=M.RENDER_MODES) or "none",
            location=(c.name(m, "location", w) if "location" in m else None) or M.DEVICE,
            options=_bot_options(c, m, w),
            line=m.line,
        )
        if isinstance(m.get("options"), Mapping):
            c.key_lines[join(w, "options.target")] = line_of(m["options"], "target")
        if group.behaviour == "replay" and not group.options.get("trace"):
            c.error(
                join(w, "options"),
                "a replay group needs options.trace (a JSONL trace file)",
                line_of(m, "behaviour"),
            )
        out.append(group)
    return out


def _link_params(c: Checker, m: Mapping, where: str, partial: bool) -> dict[str, Any]:
    """LinkSpec field values from a link (or set_link) mapping."""
    out: dict[str, Any] = {}
    for key, attr, kind in (
        ("latency", "latency_s", "duration"),
        ("jitter", "jitter_s", "duration"),
        ("loss", "loss", "percent"),
        ("bandwidth", "bandwidth_bps", "rate"),
    ):
        if key in m:
            if kind == "rate" and m[key] in ("none", "unlimited", None):
                out[attr] = None  # lift a limit
                continue
            v = c.quantity(
                m,
                key,
                where,
                kind,
                positive=(kind == "rate"),
                maximum=1.0 if kind == "percent" else None,
            )
            if v is not None:
                out[attr] = v
    if "bursty_loss" in m:
        bw = join(where, "bursty_loss")
        b = m["bursty_loss"]
        if b is None or b is False:
            out["bursty"] = None
        else:
            bm = c.mapping(b, bw, line_of(m, "bursty_loss"))
            if bm is not None:
                c.keys(bm, bw, BURSTY_KEYS, required=("p", "r"))
                p = c.quantity(bm, "p", bw, "percent", maximum=1.0)
                r = c.quantity(bm, "r", bw, "percent", positive=True, maximum=1.0)
                if p is not None and r is not None:
                    out["bursty"] = M.BurstyLoss(
                        p,
                        r,
                        c.quantity(bm, "bad_loss", bw, "percent", 1.0, maximum=1.0) or 0.0,
                        c.quantity(bm, "good_loss", bw, "percent", 0.0, maximum=1.0) or 0.0,
                    )
    if partial and not out and "bursty_loss" not in m:
        c.error(
            where,
            "set_link changes nothing: give latency, jitter, loss, bursty_loss or bandwidth",
            m.line,
        )
    return out


def _between(
    c: Checker, m: Mapping, where: str, locations: dict[str, str]
) -> tuple[str, str] | None:
    if "between" not in m:
        c.error(
            where, "missing required key 'between' (two locations, e.g. [device, edge])", m.line
        )
        return None
    v = m["between"]
    line = line_of(m, "between")
    at = join(where, "between")
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)):
        c.error(at, f"expected two locations such as [device, edge], got {show(v)}", line)
        return None
    a, b = v
    if a == b:
        c.error(at, f"a link joins two different locations, not {a!r} to itself", line)
        return None
    ok = True
    for loc in (a, b):
        if loc not in locations:
            ok = False
            if loc in M.LOCATIONS_NODE:
                c.error(at, f"no node is at location {loc!r}: a link there joins nothing", line)
            else:
                c.error(
                    at,
                    f"undefined location {loc!r}{did_you_mean(loc, locations)};"
                    f" defined: {', '.join(sorted(locations))}",
                    line,
                )
    return (a, b) if ok else None


def _links(c: Checker, top: Mapping, locations: dict[str, str]) -> list[M.LinkSpec]:
    out: list[M.LinkSpec] = []
    seen: dict[frozenset, int] = {}
    for _, item, w, line in items(c, top, "links", ""):
        m = c.mapping(item, w, line)
        if m is None:
            continue
        c.keys(m, w, LINK_KEYS)
        ends = _between(c, m, w, locations)
        params = _link_params(c, m, w, partial=False)
        if ends is None:
            continue
        link = M.LinkSpec(*ends, **params, line=m.line)
        if link.key in seen:
            c.error(
                join(w, "between"),
                f"a link between {ends[0]} and {ends[1]} is already defined"
                f" on line {seen[link.key]}",
                line_of(m, "between"),
            )
            continue
        seen[link.key] = m.line
        out.append(link)
    return out


def _action(c: Checker, m: Mapping, w: str, duration: float, scn: M.Scenario) -> M.Action | None:
    kinds = [k for k in m if k in ACTION_KINDS]
    c.keys(m, w, ("at", *ACTION_KINDS), required=("at",))
    if len(kinds) != 1:
        c.error(
            w,
            f"an action has exactly one of {', '.join(ACTION_KINDS)}"
            + (f"; found {', '.join(kinds)}" if kinds else ""),
            m.line,
        )
        return None
    kind = kinds[0]
    at = c.quantity(m, "at", w, "duration")
    if at is None:
        return None
    if at > duration:
        c.error(
            join(w, "at"),
            f"{m['at']!r} is after the end of the run"
            f" (duration {duration:g} s, counted from the end of warm-up)",
            line_of(m, "at"),
        )
        return None
    line = line_of(m, kind)
    kw = join(w, kind)
    body = m[kind]
    # Short forms: `unplug: alice`, `kill: edge-1`.
    if isinstance(body, str) and kind in ("unplug", "plug", "kill"):
        body = Mapping({"node" if kind == "kill" else "client": body})
        body.line, body.lines = line or 0, {"node": line or 0, "client": line or 0}
    b = c.mapping(body, kw, line)
    if b is None:
        return None

    def client(needs_battery: bool = False) -> str | None:
        name = c.string(b, "client", kw)
        if name is None:
            if "client" not in b:
                c.error(kw, "missing required key 'client'", b.line)
            return None
        spec = scn.client(name)
        if spec is None:
            names = [x.name for x in scn.clients]
            c.error(
                join(kw, "client"),
                f"no client named {name!r}{did_you_mean(name, names)}",
                line_of(b, "client"),
            )
            return None
        if needs_battery and spec.battery is None:
            c.error(
                join(kw, "client"),
                f"client {name!r} has no battery ({spec.device})",
                line_of(b, "client"),
            )
            return None
        return name

    if kind == "set_link":
        c.keys(b, kw, LINK_KEYS)
        ends = _between(c, b, kw, _locations(scn))
        changes = _link_params(c, b, kw, partial=True)
        if ends is None:
            return None
        if scn.link(*ends) is None:
            c.error(
                join(kw, "between"),
                f"no link between {ends[0]} and {ends[1]} is defined under links:",
                line_of(b, "between"),
            )
            return None
        return M.SetLink(at, line or 0, ends[0], ends[1], changes)
    if kind == "set_cpu":
        c.keys(b, kw, ("client", "share"), required=("share",))
        name = client()
        share = c.quantity(b, "share", kw, "percent", positive=True)
        return M.SetCpu(at, line or 0, name, share) if name and share is not None else None
    if kind == "set_battery":
        c.keys(b, kw, ("client", "level"), required=("level",))
        name = client(needs_battery=True)
        level = c.quantity(b, "level", kw, "percent", maximum=1.0)
        return M.SetBattery(at, line or 0, name, level) if name and level is not None else None
    if kind in ("plug", "unplug"):
        c.keys(b, kw, ("client",))
        name = client(needs_battery=True)
        return M.Charger(at, line or 0, name, kind == "plug") if name else None
    if kind == "migrate":
        c.keys(b, kw, ("client", "to"), required=("to",))
        name = client()
        to = c.string(b, "to", kw)
        targets = [M.DEVICE, *(n.name for n in scn.render_nodes)]
        if to is not None and to not in targets:
            c.error(
                join(kw, "to"),
                f"no render node named {to!r}{did_you_mean(to, targets)};"
                f" migrate to one of {', '.join(targets)}",
                line_of(b, "to"),
            )
            return None
        return M.Migrate(at, line or 0, name, to) if name and to else None
    # kill
    c.keys(b, kw, ("node",), required=("node",))
    node = c.string(b, "node", kw)
    killable = [*(n.name for n in scn.render_nodes), *KILLABLE_SERVICES]
    if node is not None and node not in killable:
        c.error(
            join(kw, "node"),
            f"no node named {node!r}{did_you_mean(node, killable)};"
            f" kill one of {', '.join(killable)}",
            line_of(b, "node"),
        )
        return None
    return M.Kill(at, line or 0, node) if node else None


def _locations(scn: M.Scenario) -> dict[str, str]:
    """Every location something is at -> what (for messages)."""
    out: dict[str, str] = {scn.sim.location: "sim"}
    for n in scn.render_nodes:
        out.setdefault(n.location, f"render node {n.name}")
    for cl in scn.clients:
        out.setdefault(cl.location, f"client {cl.name}")
    for g in scn.bots:
        out.setdefault(g.location, f"bot group {g.name}")
    return out


def _cross_checks(c: Checker, scn: M.Scenario, nodes_map: Mapping | None) -> None:
    # Names are player names at the sim and peers at the scheduler: unique across kinds.
    seen: dict[str, str] = {}
    for kind, named in (
        ("render node", scn.render_nodes),
        ("client", scn.clients),
        ("bot group", scn.bots),
    ):
        for item in named:
            if item.name in seen:
                c.error(
                    "nodes",
                    f"the name {item.name!r} is used by a {seen[item.name]} and a {kind}",
                    item.line,
                )
            seen.setdefault(item.name, kind)
    node_names = [n.name for n in scn.render_nodes]
    for i, cl in enumerate(scn.clients):
        where = f"nodes.clients[{i}]"
        if cl.mode == "remote" and cl.node is None:
            c.error(where, "mode: remote needs node: (the render node it starts on)", cl.line)
        if cl.node is not None and cl.node not in node_names:
            c.error(
                join(where, "node"),
                f"no render node named {cl.node!r}{did_you_mean(cl.node, node_names)}"
                + (
                    f"; nodes: {', '.join(node_names)}" if node_names else "; the scenario has none"
                ),
                c.key_lines.get(join(where, "node"), cl.line),
            )
        if cl.node is not None and cl.mode == "local":
            c.error(
                join(where, "node"),
                "node: is where a remote client starts; this client starts local",
                c.key_lines.get(join(where, "node"), cl.line),
            )
    players = [cl.name for cl in scn.clients]
    for i, g in enumerate(scn.bots):
        target = g.options.get("target")
        if not target:
            continue
        bot_names = {f"{other.name}{i}" for other in scn.bots for i in range(other.count)}
        if target not in players and target not in bot_names:
            c.error(
                f"nodes.bots[{i}].options.target",
                f"no client or bot named {target!r}{did_you_mean(target, players)}",
                c.key_lines.get(f"nodes.bots[{i}].options.target", g.line),
            )
    if nodes_map is not None and not scn.clients and not scn.bots:
        c.warn("nodes", "no clients and no bots: nothing plays", nodes_map.line)
    if scn.scheduler.variants and scn.repeats < 3:
        c.warn(
            "repeats",
            f"{scn.repeats} repeat(s) of a sweep: confidence intervals need at least 3",
            None,
        )


def build(
    data: Any, file: str, path: Path | None = None
) -> tuple[M.Scenario | None, list[Problem]]:
    """Validate loaded YAML into a `Scenario`; returns it (None on errors) and all problems."""
    c = Checker(file)
    top = c.mapping(data, "", 1)
    if top is None:
        return None, c.problems
    c.keys(top, "", TOP_KEYS, required=("name", "duration"))
    name = c.string(top, "name", "") or ""
    duration = c.quantity(top, "duration", "", "duration", positive=True) or 0.0
    repeats = c.integer(top, "repeats", "", 1, minimum=1)
    seeds = list(range(1, repeats + 1))
    if "seeds" in top:
        raw = top["seeds"]
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = [raw + i for i in range(repeats)]  # one seed: the first of consecutive ones
        if not (
            isinstance(raw, list)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in raw)
        ):
            c.error(
                "seeds",
                f"expected a list of whole numbers (one per repeat), got {show(raw)}",
                line_of(top, "seeds"),
            )
        elif len(raw) < repeats:
            c.error(
                "seeds",
                f"{len(raw)} seed(s) for {repeats} repeats: give one per repeat",
                line_of(top, "seeds"),
            )
        else:
            seeds = list(raw)
    scn = M.Scenario(
        name=name,
        description=(c.string(top, "description", "", "") or "").strip(),
        duration_s=duration,
        warmup_s=c.quantity(top, "warmup", "", "duration", 0.0) or 0.0,
        repeats=repeats,
        seeds=seeds,
        path=path,
    )
    if name and not NAME_RE.match(name):
        c.error(
            "name",
            f"{name!r} is not a valid name"
            " (1-32 of A-Z a-z 0-9 _ . -; it names the results folder)",
            line_of(top, "name"),
        )
    nodes = c.mapping(top["nodes"], "nodes", line_of(top, "nodes")) if "nodes" in top else None
    if nodes is not None:
        c.keys(nodes, "nodes", NODES_KEYS)
        if "sim" in nodes:
            scn.sim = _sim(c, c.mapping(nodes["sim"], "nodes.sim", line_of(nodes, "sim")))
        scn.render_nodes = _render_nodes(c, nodes)
        scn.clients = _clients(c, nodes)
        scn.bots = _bots(c, nodes)
        sched = (
            c.mapping(nodes["scheduler"], "nodes.scheduler", line_of(nodes, "scheduler"))
            if "scheduler" in nodes
            else None
        )
        scn.scheduler = _scheduler(c, sched, [n.name for n in scn.render_nodes])
    else:
        c.error("", "missing required key 'nodes'", top.line)
    scn.links = _links(c, top, _locations(scn))
    actions: list[M.Action] = []
    for _, item, w, line in items(c, top, "actions", ""):
        m = c.mapping(item, w, line)
        if m is not None:
            action = _action(c, m, w, duration, scn)
            if action is not None:
                actions.append(action)
    scn.actions = sorted(actions, key=lambda a: a.at_s)  # stable: same time keeps file order
    _cross_checks(c, scn, nodes)
    return (None if c.errors else scn), c.problems


def load(path: str | Path, on_warning: Callable[[Problem], None] | None = None) -> M.Scenario:
    """Read and validate a scenario file; `ScenarioError` lists every error."""
    p = Path(path)
    try:
        data = load_yaml(p)
    except SourceError as exc:
        raise ScenarioError([Problem(str(p), exc.line, "", str(exc))]) from None
    scenario, problems = build(data, str(p), p)
    if scenario is None:
        raise ScenarioError([q for q in problems if not q.warning])
    for q in problems:
        if on_warning is not None:
            on_warning(q)
    return scenario
