"""Testbed emulation: hosts in network namespaces, links through a user-space emulator.

* `links` — `LinkConditions` (delay, jitter, loss, bursty loss, rate, queue);
* `linkemu` — the link-emulator process (TUN devices) and its asyncio client;
* `netns` — namespaces, veth pairs, sockets inside a namespace, stale cleanup;
* `topology` — `Testbed` and `Host`: what the scenario runner uses;
* `forward` — reach a port inside a namespace from 127.0.0.1;
* `cpu` — cgroup CPU limits (v2 ``cpu.max`` or v1 CFS quota);
* `probe` — small UDP/TCP measuring tools run inside hosts (tests, bench).

Names are imported lazily, so ``python -m experiments.testbed.linkemu`` does
not import itself twice. See docs/testbed.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CpuLimit": "cpu",
    "CpuLimitUnavailable": "cpu",
    "limit_cpu": "cpu",
    "IDEAL": "links",
    "LinkConditions": "links",
    "LinkConfigError": "links",
    "Host": "topology",
    "LinkEvent": "topology",
    "Testbed": "topology",
    "TestbedError": "topology",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'experiments.testbed' has no attribute {name!r}")
    return getattr(importlib.import_module(f"experiments.testbed.{module}"), name)
