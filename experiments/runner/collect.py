"""Scrape Prometheus ``/metrics`` into the tidy table: one row per sample.

Columns (``metrics.csv`` of a run, see docs/experiments.md):

    time, t, run, node, metric, labels, value

* ``time`` — Unix seconds of the scrape; ``t`` — seconds since the start of
  the measured phase (negative during warm-up), what plots use;
* ``metric`` — the *sample* name as exposed (``..._total``, ``..._bucket``,
  ``..._sum``, ``..._count``), so counters and histograms stay raw;
* ``labels`` — ``k=v`` pairs joined by ``;``, sorted ("" when none).

Histograms are kept as exposed — every bucket plus ``_sum`` and ``_count`` —
rather than reduced to quantiles at scrape time: the report derives per-second
means (Δsum/Δcount) or quantiles over any window from them later, and nothing
is lost. ``_created`` samples (a timestamp, not a measurement) are dropped.
"""

from __future__ import annotations

import asyncio
import csv
import math
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

COLUMNS = ("time", "t", "run", "node", "metric", "labels", "value")


@dataclass(frozen=True, slots=True)
class Sample:
    metric: str
    labels: str
    value: float


def format_labels(labels: dict[str, str]) -> str:
    """``{"b": "2", "a": "1"}`` → ``"a=1;b=2"`` (sorted, so equal sets compare equal)."""
    return ";".join(f"{k}={v}" for k, v in sorted(labels.items()))


def parse_labels(text: str) -> dict[str, str]:
    """Inverse of `format_labels`."""
    if not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(";"))


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (``_created`` dropped)."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out.append(Sample(s.name, format_labels(s.labels), float(s.value)))
    return out


def _http_get(url: str, timeout: float) -> str:
    # No proxies: the targets are ours (loopback, or the testbed's relays).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.read().decode("utf-8", errors="replace")


@dataclass
class Target:
    """One node's ``/metrics``, as the runner reaches it (after any relay)."""

    node: str
    url: str  # http://127.0.0.1:PORT/metrics
    ok: int = 0
    failed: int = 0
    last_error: str = ""
    last: dict[tuple[str, str], float] = field(default_factory=dict)  # latest values

    def value(self, metric: str, labels: str = "") -> float | None:
        return self.last.get((metric, labels))


class MetricsTable:
    """The run's ``metrics.csv``, appended scrape by scrape (flushed each time)."""

    def __init__(self, path: Path, run: str, t0: float) -> None:
        self.path = path
        self.run = run
        self.t0 = t0  # Unix time of the start of the measured phase
        self._file: IO[str] = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMNS)
        self.rows = 0

    def write(self, when: float, node: str, samples: Iterable[Sample]) -> None:
        t = round(when - self.t0, 3)
        for s in samples:
            if math.isnan(s.value):
                continue
            self._csv.writerow(
                (f"{when:.3f}", t, self.run, node, s.metric, s.labels, repr(s.value))
            )
            self.rows += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Scraper:
    """Scrapes every target every ``interval`` seconds into a `MetricsTable`.

    Targets may be added while it runs (a client that starts later). A
    target that does not answer is counted, not fatal: a killed node is part
    of some experiments. ``on_scrape`` sees each round (progress display).
    """

    def __init__(
        self,
        table: MetricsTable,
        interval: float = 1.0,
        timeout: float = 2.0,
        on_scrape: Callable[[float], None] | None = None,
    ) -> None:
        self.table = table
        self.interval = interval
        self.timeout = timeout
        self.targets: dict[str, Target] = {}
        self.on_scrape = on_scrape
        self.rounds = 0

    def add(self, node: str, url: str) -> Target:
        target = Target(node, url)
        self.targets[node] = target
        return target

    def remove(self, node: str) -> None:
        self.targets.pop(node, None)

    async def scrape_once(self) -> None:
        targets = list(self.targets.values())
        when = time.time()
        results = await asyncio.gather(
            *(asyncio.to_thread(_http_get, t.url, self.timeout) for t in targets),
            return_exceptions=True,
        )
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                target.failed += 1
                target.last_error = f"{type(result).__name__}: {result}"
                continue
            try:
                samples = parse_metrics(result)
            except ValueError as exc:  # a broken exposition must not stop the run
                target.failed += 1
                target.last_error = f"unparsable /metrics: {exc}"
                continue
            target.ok += 1
            target.last = {(s.metric, s.labels): s.value for s in samples}
            self.table.write(when, target.node, samples)
        self.rounds += 1
        if self.on_scrape is not None:
            self.on_scrape(when)

    async def run(self) -> None:
        """Scrape on a fixed cadence until cancelled (a slow round does not drift it)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.scrape_once()
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < 0:  # fell behind: skip the missed slots rather than bursting
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)
