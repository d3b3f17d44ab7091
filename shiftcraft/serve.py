"""Running one service from its CLI: until SIGINT/SIGTERM, then a clean stop.

Every service (`server.service.SimServer`, `scheduler.service.SchedulerService`,
`renderer.node.service.RenderNode`) has the same small shape: ``run()``
serves until ``stop()``, ``wait_ready(task)`` returns once it listens (or
raises what stopped it), and ``url`` says where. Once ready the CLI prints
``listening on URL`` — the line scripts, tests and `experiments.bots.launch.
start_service` wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol


class Service(Protocol):
    url: str

    def run(self) -> Awaitable[None]: ...
    def stop(self) -> None: ...
    def wait_ready(self, task: asyncio.Task) -> Awaitable[None]: ...


@contextlib.contextmanager
def calling_on_signals(callback: Callable[[], None], *sigs: int) -> Iterator[None]:
    """While inside, the running loop calls ``callback`` on each of ``sigs`` (Unix)."""
    loop = asyncio.get_running_loop()
    for sig in sigs:
        loop.add_signal_handler(sig, callback)
    try:
        yield
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


async def serve_until_signalled(
    service: Service, name: str, on_ready: Callable[[], None] | None = None
) -> None:
    """Run ``service`` until a signal stops it; its own error is raised as itself."""
    try:
        with calling_on_signals(service.stop, signal.SIGINT, signal.SIGTERM):
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(service.run(), name=name)
                await service.wait_ready(task)
                print(f"listening on {service.url}", flush=True)
                if on_ready is not None:
                    on_ready()
    except BaseExceptionGroup as group:
        # One task: report its error itself (a bad store, a taken port), not a group.
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


def configure_logging(level: str, quiet: tuple[str, ...] = ()) -> None:
    """Log lines on stderr with time and logger name; ``quiet`` loggers at WARNING."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
