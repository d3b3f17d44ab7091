"""The collector: Prometheus text → tidy rows → metrics.csv, from a registry and a real sim."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from experiments.runner.collect import (
    COLUMNS,
    MetricsTable,
    Scraper,
    format_labels,
    parse_labels,
    parse_metrics,
)


def exposition() -> str:
    reg = CollectorRegistry()
    Gauge("shiftcraft_client_fps", "fps", registry=reg).set(42.5)
    c = Counter("shiftcraft_client_received_bytes", "rx", ["link"], registry=reg)
    c.labels(link="sim").inc(1000)
    c.labels(link="stream").inc(250)
    h = Histogram("shiftcraft_client_frame_interval_seconds", "frames", buckets=(0.01, 0.05),
                  registry=reg)  # fmt: skip
    for v in (0.005, 0.02, 0.2):
        h.observe(v)
    return generate_latest(reg).decode()


def test_parse_keeps_histogram_buckets_sum_count_and_drops_created() -> None:
    rows = {(s.metric, s.labels): s.value for s in parse_metrics(exposition())}
    assert rows[("shiftcraft_client_fps", "")] == 42.5
    assert rows[("shiftcraft_client_received_bytes_total", "link=sim")] == 1000
    assert rows[("shiftcraft_client_received_bytes_total", "link=stream")] == 250
    assert rows[("shiftcraft_client_frame_interval_seconds_count", "")] == 3
    assert rows[("shiftcraft_client_frame_interval_seconds_sum", "")] == 0.225
    assert rows[("shiftcraft_client_frame_interval_seconds_bucket", "le=0.01")] == 1
    assert rows[("shiftcraft_client_frame_interval_seconds_bucket", "le=0.05")] == 2
    assert rows[("shiftcraft_client_frame_interval_seconds_bucket", "le=+Inf")] == 3
    assert not any(m.endswith("_created") for m, _ in rows)


def test_labels_round_trip_sorted() -> None:
    text = format_labels({"to": "edge", "from": "device"})
    assert text == "from=device;to=edge"
    assert parse_labels(text) == {"from": "device", "to": "edge"}
    assert parse_labels("") == {}


def test_table_columns_and_relative_time(tmp_path: Path) -> None:
    table = MetricsTable(tmp_path / "m.csv", "run-r1", t0=1000.0)
    table.write(998.5, "alice", parse_metrics(exposition()))
    table.close()
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    fps = next(r for r in rows if r["metric"] == "shiftcraft_client_fps")
    assert (fps["run"], fps["node"], float(fps["t"]), float(fps["value"])) == (
        "run-r1", "alice", -1.5, 42.5,
    )  # fmt: skip
    assert table.rows == len(rows)


def test_scrape_a_real_sim_server(sim_server, tmp_path: Path) -> None:
    table = MetricsTable(tmp_path / "m.csv", "r", t0=time.time())
    scraper = Scraper(table)
    scraper.add("sim", sim_server.http_url + "/metrics")
    scraper.add("gone", "http://127.0.0.1:9/metrics")  # nothing listens: counted, not fatal

    async def twice() -> None:
        await scraper.scrape_once()
        await asyncio.sleep(0.3)
        await scraper.scrape_once()

    asyncio.run(twice())
    table.close()
    sim, gone = scraper.targets["sim"], scraper.targets["gone"]
    assert sim.ok == 2 and sim.failed == 0
    assert gone.ok == 0 and gone.failed == 2 and gone.last_error
    with open(tmp_path / "m.csv", newline="") as f:
        metrics = {r["metric"] for r in csv.DictReader(f) if r["node"] == "sim"}
    assert "shiftcraft_server_tick_duration_seconds_count" in metrics
    assert "shiftcraft_server_tick_duration_seconds_bucket" in metrics
    assert sim.value("shiftcraft_server_tick_duration_seconds_count") > 0
