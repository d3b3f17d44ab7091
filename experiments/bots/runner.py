"""Run N bots in one asyncio process and summarise what they did.

Joins are staggered (``join_rate`` per second) so a hundred bots do not hit
the server's handshake and section streaming in the same tick, and every
bot gets its own RNG seeded from (seed, name), so a run is repeatable bot by
bot. `run_bots` returns a `Summary`; ``on_progress`` gets a `Progress`
snapshot at a fixed interval (the bench and the demo read those to know
when all bots are in and warm).

Optionally each bot records its trace (``record``, see `trace`) and renders
its own view (``render``, see `view`); a rendering run compiles or loads the
renderer once before the first join.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from client.connection import Traffic
from experiments.bots.behaviours import BEHAVIOURS, BehaviourOptions
from experiments.bots.bot import Bot
from experiments.bots.trace import recorder_factory
from experiments.bots.view import VIEWS, ViewOptions, prepare


@dataclass(slots=True)
class RunConfig:
    url: str
    count: int = 10
    behaviour: str = "walk"
    seconds: float = 30.0  # total run time from the first join; 0 = until stopped
    token: str = ""
    name_prefix: str = "bot"
    join_rate: float = 20.0  # joins per second
    seed: int = 0
    role: str = "bot"
    connect_timeout: float = 10.0
    ping_interval: float = 5.0
    options: BehaviourOptions = field(default_factory=BehaviourOptions)
    record: str = ""  # trace path per bot ({name} = the bot's name); "" = none
    render: str = "none"  # a `view.VIEWS` name: none | local
    view: ViewOptions = field(default_factory=ViewOptions)

    def bot_name(self, index: int) -> str:
        return f"{self.name_prefix}{index}"


@dataclass(slots=True)
class Progress:
    elapsed_s: float
    started: int
    joined: int
    warm: int
    failed: int
    disconnected: int
    edits_sent: int
    edits_ok: int
    edits_rejected: int
    bytes_in: int
    bytes_out: int


@dataclass(slots=True)
class Summary:
    bots: int
    behaviour: str
    seconds: float
    joined: int
    failed: int
    failures: dict[str, int]  # join failures by error code
    disconnected: int  # sessions the server ended before we stopped
    warm: int
    frames_sent: int
    edits_sent: int
    edits_ok: int
    edits_rejected: int
    edits_pending: int  # sent, no result yet when the run ended
    rejected_reasons: dict[str, int]
    server_errors: dict[str, int]
    updates: int
    sections: int
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    join_p50_ms: float | None
    join_max_ms: float | None
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None
    edit_latency_p50_ms: float | None
    edit_latency_p99_ms: float | None
    cpu_s: float  # this process
    cpu_percent: float
    edits_acked: int = 0  # results received: ok + rejected
    actions: int = 0  # what the behaviours did, in total (see actions_by_kind)
    actions_by_kind: dict[str, int] = field(default_factory=dict)
    behaviour_stats: dict[str, float] = field(default_factory=dict)
    render: str = "none"
    frames_rendered: int = 0
    render_ms_p50: float | None = None
    render_ms_p99: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"bots           {self.joined}/{self.bots} joined ({self.behaviour}),"
            f" {self.failed} failed{_brief(self.failures)}, {self.disconnected} disconnected,"
            f" {self.warm} warm",
            f"duration       {self.seconds:.1f} s, bot process CPU {self.cpu_percent:.0f} %",
            f"inputs         {self.frames_sent} frames sent, {self.updates} updates,"
            f" {self.sections} sections received",
            f"actions        {self.actions}{_brief(self.actions_by_kind)}",
            f"edits          {self.edits_sent} sent, {self.edits_acked} acknowledged:"
            f" {self.edits_ok} ok, {self.edits_rejected} rejected"
            f"{_brief(self.rejected_reasons)}, {self.edits_pending} unanswered",
            f"traffic        {self.bytes_in} B in / {self.bytes_out} B out,"
            f" {self.messages_in} / {self.messages_out} messages",
            f"latency        join p50 {_ms(self.join_p50_ms)}, rtt p50 {_ms(self.rtt_p50_ms)}"
            f" p99 {_ms(self.rtt_p99_ms)}, edit p50 {_ms(self.edit_latency_p50_ms)}"
            f" p99 {_ms(self.edit_latency_p99_ms)}",
        ]
        if self.render != "none":
            lines.append(
                f"rendering      {self.render}: {self.frames_rendered} frames,"
                f" p50 {_ms(self.render_ms_p50)} p99 {_ms(self.render_ms_p99)}"
            )
        if self.behaviour_stats:
            lines.append(f"behaviour      {_brief(self.behaviour_stats).strip(' ()')}")
        if self.server_errors:
            lines.append(f"server errors  {self.server_errors}")
        return "\n".join(lines)


def _brief(counts: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")" if counts else ""


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[rank]


def make_bots(cfg: RunConfig) -> list[Bot]:
    """The bots of a run, not yet joined. ValueError (a sentence) for a bad config."""
    try:
        behaviour_cls = BEHAVIOURS[cfg.behaviour]
    except KeyError:
        raise ValueError(
            f"unknown behaviour {cfg.behaviour!r}; known: {', '.join(sorted(BEHAVIOURS))}"
        ) from None
    try:
        make_view = VIEWS[cfg.render]
    except KeyError:
        raise ValueError(f"unknown render mode {cfg.render!r}; known: {', '.join(VIEWS)}") from None
    names = [cfg.bot_name(i) for i in range(cfg.count)]
    behaviour_cls.prepare(cfg.options, names)
    recorder_for = recorder_factory(cfg.record, cfg.count)
    bots = []
    for name in names:
        # String seeds hash with SHA-512: stable across runs and machines.
        rng = random.Random(f"{cfg.seed}:{name}")
        bots.append(
            Bot(
                name,
                cfg.url,
                behaviour_cls(rng, cfg.options),
                rng,
                token=cfg.token,
                role=cfg.role,
                connect_timeout=cfg.connect_timeout,
                ping_interval=cfg.ping_interval,
                recorder=recorder_for(name),
                view=make_view(cfg.view),
            )
        )
    return bots


def progress_of(bots: list[Bot], started: int, elapsed: float) -> Progress:
    stats = [b.stats for b in bots]
    return Progress(
        elapsed_s=round(elapsed, 3),
        started=started,
        joined=sum(s.joined for s in stats),
        warm=sum(s.warm for s in stats),
        failed=sum(s.join_error is not None for s in stats),
        disconnected=sum(s.disconnected is not None for s in stats),
        edits_sent=sum(s.edits_sent for s in stats),
        edits_ok=sum(s.edits_ok for s in stats),
        edits_rejected=sum(s.edits_rejected for s in stats),
        bytes_in=sum(s.traffic.bytes_in for s in stats),
        bytes_out=sum(s.traffic.bytes_out for s in stats),
    )


def summarise(cfg: RunConfig, bots: list[Bot], seconds: float, cpu_s: float) -> Summary:
    stats = [b.stats for b in bots]
    traffic = Traffic()
    failures: Counter = Counter()
    reasons: Counter = Counter()
    errors: Counter = Counter()
    rtts: list[float] = []
    edit_lat: list[float] = []
    render_ms: list[float] = []
    actions: Counter = Counter()
    for s in stats:
        actions.update(s.actions)
        traffic.add(s.traffic)
        if s.join_error is not None:
            failures[s.join_error] += 1
        reasons.update(s.rejected_reasons)
        errors.update(s.errors)
        rtts.extend(s.rtts)
        edit_lat.extend(s.edit_latencies)
    joins = [s.join_s for s in stats if s.join_s is not None]
    frames_rendered = 0
    behaviour_stats: dict[str, float] = {}
    for bot in bots:
        if bot.view is not None:
            frames_rendered += bot.view.stats.frames
            render_ms.extend(bot.view.stats.render_ms)
        if not bot.stats.joined:
            continue
        for key, value in bot.behaviour.report().items():
            old = behaviour_stats.get(key)
            if old is None:
                behaviour_stats[key] = value
            elif key.endswith("_max"):
                behaviour_stats[key] = max(old, value)
            else:
                behaviour_stats[key] = old + value

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 2)

    return Summary(
        bots=cfg.count,
        behaviour=cfg.behaviour,
        seconds=round(seconds, 3),
        joined=sum(s.joined for s in stats),
        failed=sum(failures.values()),
        failures=dict(failures),
        disconnected=sum(s.disconnected is not None for s in stats),
        warm=sum(s.warm for s in stats),
        frames_sent=sum(s.frames_sent for s in stats),
        edits_sent=sum(s.edits_sent for s in stats),
        edits_ok=sum(s.edits_ok for s in stats),
        edits_rejected=sum(s.edits_rejected for s in stats),
        edits_pending=sum(b.edits_pending for b in bots),
        rejected_reasons=dict(reasons),
        server_errors=dict(errors),
        updates=sum(s.updates for s in stats),
        sections=sum(s.sections for s in stats),
        bytes_in=traffic.bytes_in,
        bytes_out=traffic.bytes_out,
        messages_in=traffic.messages_in,
        messages_out=traffic.messages_out,
        join_p50_ms=ms(percentile(joins, 50)),
        join_max_ms=ms(max(joins) if joins else None),
        rtt_p50_ms=ms(percentile(rtts, 50)),
        rtt_p99_ms=ms(percentile(rtts, 99)),
        edit_latency_p50_ms=ms(percentile(edit_lat, 50)),
        edit_latency_p99_ms=ms(percentile(edit_lat, 99)),
        cpu_s=round(cpu_s, 3),
        cpu_percent=round(100.0 * cpu_s / seconds, 1) if seconds > 0 else 0.0,
        edits_acked=sum(s.edits_ok + s.edits_rejected for s in stats),
        actions=sum(actions.values()),
        actions_by_kind=dict(sorted(actions.items())),
        behaviour_stats=behaviour_stats,
        render=cfg.render,
        frames_rendered=frames_rendered,
        render_ms_p50=_round(percentile(render_ms, 50)),
        render_ms_p99=_round(percentile(render_ms, 99)),
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


async def run_bots(
    cfg: RunConfig,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 1.0,
    bots: list[Bot] | None = None,
) -> Summary:
    """Run the bots until ``cfg.seconds`` pass or ``stop`` is set; every bot leaves cleanly.

    Pass ``bots`` (from `make_bots`) to look at them while they run (tests).
    """
    stop = stop or asyncio.Event()
    bots = bots if bots is not None else make_bots(cfg)
    if cfg.render != "none" and cfg.count:
        # Compile or load the renderer before the first join: a first compile
        # takes tens of seconds, during which no bot could read its socket.
        await asyncio.to_thread(prepare, cfg.render)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cpu0 = time.process_time()
    started = 0

    async def joiner(tg: asyncio.TaskGroup) -> None:
        nonlocal started
        gap = 1.0 / cfg.join_rate if cfg.join_rate > 0 else 0.0
        for i, bot in enumerate(bots):
            if stop.is_set():
                return
            # Deadline-based, so slow joins do not stretch the schedule.
            delay = t0 + i * gap - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await stop.wait()
                    return
                except TimeoutError:
                    pass
            tg.create_task(bot.run(stop), name=f"bot-{bot.name}")
            started += 1

    async def reporter() -> None:
        while True:
            await asyncio.sleep(progress_interval)
            on_progress(progress_of(bots, started, loop.time() - t0))  # type: ignore[misc]

    async def timer() -> None:
        await asyncio.sleep(cfg.seconds)
        stop.set()

    async with asyncio.TaskGroup() as tg:
        side = []
        if cfg.seconds > 0:
            side.append(tg.create_task(timer(), name="bots-timer"))
        if on_progress is not None and progress_interval > 0:
            side.append(tg.create_task(reporter(), name="bots-progress"))
        tg.create_task(joiner(tg), name="bots-joiner")
        await stop.wait()
        for task in side:
            task.cancel()
    seconds = loop.time() - t0
    if on_progress is not None:
        on_progress(progress_of(bots, started, seconds))
    return summarise(cfg, bots, seconds, time.process_time() - cpu0)
