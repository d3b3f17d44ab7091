"""Scheduler configuration: safeguards, defaults, and the policy's parameters.

A configuration file (YAML or JSON; ``--config FILE``) is one mapping::

    policy: threshold          # optional; --policy wins
    engine:                    # safeguards and defaults shared by every policy
      min_dwell_s: 15
      settle_s: 3
    threshold:                 # the parameters of the policy of that name
      fps_min: 30
      k_leave: 3

Unknown keys are errors: a typo in an experiment's configuration must not
silently run the defaults. ``docs/scheduler.md`` lists every key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.policies import PolicySpec, params_from_dict, parse_policy

TOP_LEVEL = ("policy", "engine", "threshold", "battery", "score")


@dataclass(slots=True)
class EngineConfig:
    """Safeguards applied to every policy, and defaults for what nobody measured."""

    eval_interval_s: float = 1.0  # how often clients with new samples are evaluated
    window_s: float = 5.0  # FPS / frame-time window
    min_samples: int = 3  # fewer samples in the window: no evaluation (missing data)
    stale_s: float = 3.5  # no sample for this long: stale, no evaluation
    settle_s: float = 3.0  # samples this soon after a switch are ignored
    min_dwell_s: float = 15.0  # at least this long between two switches of a player
    pending_timeout_s: float = 20.0  # no migration report by then: counted as failed
    penalty_s: float = 60.0  # a node that failed a client is not proposed to it for this long
    node_timeout_s: float = 5.0  # a node silent for this long is dead
    forget_after_s: float = 300.0  # records of departed peers are dropped after this
    rtt_k: float = 1.0  # predicted RTT = SRTT + rtt_k · RTTVAR
    rtt_max_age_s: float = 30.0  # older RTT estimates fall back to the location default
    default_rtt_ms: dict[str, float] = field(default_factory=lambda: {"edge": 20.0, "cloud": 80.0})
    location_cost: dict[str, float] = field(
        default_factory=lambda: {"device": 0.0, "edge": 0.5, "cloud": 0.3}
    )
    bandwidth_factor: float = 1.3  # a node needs this x the stream's bitrate of spare bandwidth
    default_bitrate_bps: int = 2_000_000  # a client that asks for nothing in particular
    telemetry_interval_s: float = 1.0  # told to peers in `welcome`
    recent_decisions: int = 20  # per client, in /state

    def validate(self) -> None:
        positive = ("eval_interval_s", "window_s", "stale_s", "node_timeout_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"engine.{name} must be > 0")
        for name in ("settle_s", "min_dwell_s", "penalty_s", "rtt_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"engine.{name} must be >= 0")
        if self.min_samples < 1:
            raise ValueError("engine.min_samples must be >= 1")
        if self.bandwidth_factor < 0:
            raise ValueError("engine.bandwidth_factor must be >= 0")
        if not 0.05 <= self.telemetry_interval_s <= 60:
            raise ValueError("engine.telemetry_interval_s must be within [0.05, 60]")


@dataclass(slots=True)
class SchedulerConfig:
    host: str = "127.0.0.1"
    port: int = 8780
    policy: str = "threshold"
    params: dict[str, Any] = field(default_factory=dict)  # the file's policy sections
    engine: EngineConfig = field(default_factory=EngineConfig)
    log_path: str | None = None  # JSONL decision log; None: none
    auth: str = "open"  # as the sim's --auth: open | file:PATH | secret:SECRET
    admin_token: str = ""  # /migrate requires ?token= when set
    hello_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    msg_rate: float = 20.0  # messages/s a peer may send (telemetry is 1/s)
    msg_burst: float = 40.0

    def policy_spec(self) -> PolicySpec:
        return parse_policy(self.policy, self.params)

    def validate(self) -> None:
        self.engine.validate()
        self.policy_spec()
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} outside 0..65535")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file (JSON is YAML, but a .json file gets JSON's error messages)."""
    p = Path(path)
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise ValueError(f"{p}: not valid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the configuration must be a mapping")
    unknown = sorted(str(k) for k in data if k not in TOP_LEVEL)
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {', '.join(unknown)}; expected {TOP_LEVEL}")
    return data


def build_config(data: dict[str, Any], **overrides: Any) -> SchedulerConfig:
    """A `SchedulerConfig` from a loaded file and command-line overrides (None = unset)."""
    engine = params_from_dict(EngineConfig, data.get("engine"), "engine")
    params = {k: v for k, v in data.items() if k in ("threshold", "battery", "score")}
    cfg = SchedulerConfig(engine=engine, params=params)
    if isinstance(data.get("policy"), str):
        cfg.policy = data["policy"]
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.validate()
    return cfg
