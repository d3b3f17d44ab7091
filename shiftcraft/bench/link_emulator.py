"""``shiftcraft bench link-emulator``: what the user-space link emulator costs and how true it is.

Two hosts in their own namespaces, linked through the emulator (TUN), plus a
plain veth pair between the same two namespaces as the kernel baseline. Real
processes (`experiments.testbed.probe`) measure, in one run:

1. added latency at zero configured delay: UDP echo RTT through the emulator
   minus the RTT over the veth pair, pings interleaved (medians);
2. RTT with ``--delay-ms`` each way, against 2 x delay;
3. rate with ``--rate-mbit``: a UDP sender at 1.2 x the rate, received
   IP-level throughput against the configured rate (plus TCP goodput);
4. emulator CPU per Mbit/s: its CPU time (user+sys) while an unshaped link
   carries ``--load-mbit`` of UDP in 1500-byte packets, as percent of one
   core per Mbit/s (CPU-seconds per megabit x 100, so idle time in the
   window does not dilute it); also per packet, since cost is per packet.

Needs root (namespaces, TUN). Without it the result says ``emulated: false``
and the measured keys are null.

Reproduce: ``shiftcraft bench link-emulator --json``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from experiments.testbed import LinkConditions, Testbed
from experiments.testbed.netns import add_veth, emulation_support
from experiments.testbed.probe import (
    UDP_IP_OVERHEAD,
    median,
    percentile,
    result_of,
    run_client,
    start_server,
)
from shiftcraft.bench import progress

VETH_A, VETH_B = "10.77.255.1", "10.77.255.2"  # baseline pair, /30 (beats the TUN's /16)
LOC_A, LOC_B = "site-a", "site-b"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pings", type=int, default=300, help="pings per path, zero-delay phase")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay to check")
    parser.add_argument("--rate-mbit", type=float, default=10.0, help="link rate to check")
    parser.add_argument("--load-mbit", type=float, default=20.0, help="load for the CPU figure")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each load phase")
    parser.add_argument("--seed", type=int, default=1, help="emulator seed")


def run(args: argparse.Namespace) -> dict[str, Any]:
    ok, why = emulation_support()
    if not ok:
        progress(f"link-emulator: cannot emulate here ({why})")
        return {
            "emulated": False,
            "error": why,
            "added_latency_ms": None,
            "cpu_percent_per_mbps": None,
            "rtt_error_ratio": None,
            "rate_error_ratio": None,
        }
    return asyncio.run(measure(args))


def _rtts(result: dict[str, Any], target: str) -> list[float]:
    return [r for r in result["rtt_ms"][target] if r is not None]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"emulated": True}
    async with Testbed(emulated=True, seed=args.seed) as tb:
        a = await tb.add_host("a", LOC_A)
        b = await tb.add_host("b", LOC_B)
        assert a.netns and b.netns
        await add_veth(a.netns, b.netns, f"{VETH_A}/30", f"{VETH_B}/30")
        echo = await start_server(b, "udp-echo", "--port", "9000", "--duration", "120")

        # 1. Added latency at zero configured delay, interleaved with the veth baseline.
        progress(f"link-emulator: {args.pings} pings through the emulator and over veth")
        pings = await run_client(
            a, "udp-ping", "--target", b.address, "--target", VETH_B, "--port", "9000",
            "--count", str(args.pings), "--interval", "0.004", timeout=120,
        )  # fmt: skip
        emu, veth = _rtts(pings, b.address), _rtts(pings, VETH_B)
        out["rtt_emulator_p50_ms"] = median(emu)
        out["rtt_veth_p50_ms"] = median(veth)
        out["added_latency_ms"] = median(emu) - median(veth)
        out["added_latency_p95_ms"] = percentile(emu, 95) - percentile(veth, 95)

        # 2. Configured delay -> RTT.
        delay = LinkConditions(delay_ms=args.delay_ms)
        await tb.set_link(LOC_A, LOC_B, delay)
        count = max(20, int(2.0 / (2 * args.delay_ms / 1000 + 0.01)))
        progress(f"link-emulator: {count} pings at {args.delay_ms:g} ms each way")
        pings = await run_client(
            a, "udp-ping", "--target", b.address, "--port", "9000", "--count", str(count),
            "--interval", "0.01", timeout=120,
        )  # fmt: skip
        rtt = median(_rtts(pings, b.address))
        configured_rtt = 2 * args.delay_ms
        out["rtt_configured_ms"] = configured_rtt
        out["rtt_measured_ms"] = rtt
        out["rtt_error_ratio"] = abs(rtt - configured_rtt) / configured_rtt if configured_rtt else 0
        echo.kill()
        await echo.wait()

        # 3. Rate: UDP at 1.2x the configured rate, then TCP.
        await tb.set_link(LOC_A, LOC_B, LinkConditions(rate_mbit=args.rate_mbit))
        progress(f"link-emulator: UDP at {1.2 * args.rate_mbit:g} Mbit/s into {args.rate_mbit:g}")
        udp = await _udp_load(a, b, 1.2 * args.rate_mbit, args.seconds)
        out["rate_configured_mbps"] = args.rate_mbit
        out["rate_measured_mbps"] = udp["wire_mbps"]
        out["rate_error_ratio"] = abs(udp["wire_mbps"] - args.rate_mbit) / args.rate_mbit
        progress(f"link-emulator: TCP into {args.rate_mbit:g} Mbit/s")
        goodput = await _tcp_goodput(a, b, args.seconds)
        out["tcp_goodput_mbps"] = goodput
        out["tcp_goodput_error_ratio"] = abs(goodput - args.rate_mbit) / args.rate_mbit

        # 4. CPU per Mbit/s on an unshaped link.
        await tb.set_link(LOC_A, LOC_B, LinkConditions())
        progress(f"link-emulator: emulator CPU at {args.load_mbit:g} Mbit/s unshaped")
        before = await tb.stats()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        load = await _udp_load(a, b, args.load_mbit, args.seconds)
        wall = loop.time() - t0
        after = await tb.stats()
        cpu_percent = (after["cpu_seconds"] - before["cpu_seconds"]) / wall * 100
        # The sink saw `wire_mbps` while sending; the CPU window also holds the
        # probes' start-up, so scale the load by the window it was measured in.
        mbps_over_window = load["wire_bytes"] * 8 / wall / 1e6
        out["load_mbps"] = load["wire_mbps"]
        out["emulator_cpu_percent"] = cpu_percent
        out["cpu_percent_per_mbps"] = cpu_percent / mbps_over_window
        forwarded = sum(p["delivered"] for p in after["pipes"]) - sum(
            p["delivered"] for p in before["pipes"]
        )
        out["cpu_us_per_packet"] = (after["cpu_seconds"] - before["cpu_seconds"]) / forwarded * 1e6
        out["timer_lead_ms"] = after.get("timer_lead_ms")
        out["pipes"] = {f"{p['src']}->{p['dst']}": _pipe_summary(p) for p in after["pipes"]}
    return out


def _pipe_summary(pipe: dict[str, Any]) -> dict[str, int]:
    keys = ("packets_in", "delivered", "lost", "queue_drops", "write_drops")
    return {k: pipe[k] for k in keys}


async def _udp_load(a: Any, b: Any, mbit: float, seconds: float) -> dict[str, Any]:
    sink = await start_server(
        b, "udp-sink", "--port", "9001", "--duration", str(seconds + 10), "--idle-exit", "0.5"
    )
    await run_client(
        a, "udp-blast", "--target", b.address, "--port", "9001", "--rate-mbit", str(mbit),
        "--size", str(1500 - UDP_IP_OVERHEAD), "--duration", str(seconds), timeout=seconds + 20,
    )  # fmt: skip
    result = await result_of(sink, timeout=seconds + 20)
    if not result.get("wire_mbps"):
        raise RuntimeError(f"the UDP sink received too little: {result.get('received')} packets")
    return result


async def _tcp_goodput(a: Any, b: Any, seconds: float) -> float:
    """Payload Mbit/s after the first 0.5 s (slow start excluded)."""
    sink = await start_server(b, "tcp-sink", "--port", "9002", "--duration", str(seconds + 10))
    await run_client(
        a, "tcp-send", "--target", b.address, "--port", "9002", "--duration", str(seconds),
        timeout=seconds + 20,
    )  # fmt: skip
    result = await result_of(sink, timeout=seconds + 20)
    bins = result["bins"][5:-1]  # skip 0.5 s of slow start and the partial last bin
    if not bins:
        raise RuntimeError("the TCP transfer was too short to measure")
    return sum(bins) * 8 / (len(bins) * result["bin_s"]) / 1e6
