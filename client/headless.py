"""Drive a running `Game` from async code: tests, bots that render, benchmarks.

`GameRunner` runs ``game.run()`` as a task and lets the caller wait for
conditions checked after every frame, so a test reads like a player's
session::

    async with GameRunner(Game(config, HeadlessDisplay(160, 90))) as run:
        await run.until_loaded()
        run.game.controls.forward = 1.0
        await run.sleep(0.5)
        run.game.request_edit("break", 0, 63, 2)
        await run.until(lambda g: g.replica.pending_edits == 0)

Leaving the block quits the game (as Ctrl-Q would) and waits for its
TaskGroup to finish, so nothing keeps running afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from client.game import FrameInfo, Game


class GameRunner:
    def __init__(self, game: Game) -> None:
        self.game = game
        self.task: asyncio.Task[int] | None = None
        self._waiters: list[tuple[Callable[[Game], bool], asyncio.Future[None]]] = []
        self._chained = game.on_frame
        game.on_frame = self._on_frame

    def _on_frame(self, game: Game, info: FrameInfo) -> None:
        if self._chained is not None:
            self._chained(game, info)
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(game):
                fut.set_result(None)

    async def __aenter__(self) -> GameRunner:
        self.task = asyncio.create_task(self.game.run(), name="game")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def stop(self, timeout: float = 10.0) -> int:
        """Quit the game and wait for it; returns its exit code."""
        assert self.task is not None
        self.game.controls.quit = True
        async with asyncio.timeout(timeout):
            return await self.task

    async def until(self, pred: Callable[[Game], bool], timeout: float = 10.0) -> None:
        """Wait until ``pred(game)`` holds after a frame (TimeoutError otherwise)."""
        assert self.task is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                done, _ = await asyncio.wait({fut, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if fut not in done:
                raise RuntimeError(
                    f"the game ended (exit {self.task.result()}) before the condition held"
                )
        finally:
            self._waiters.remove(entry)

    async def until_started(self, timeout: float = 600.0) -> None:
        """Wait for the first frame: after the renderer is compiled (or loaded).

        A first compile takes tens of seconds on a slow machine; give it its
        own, generous timeout rather than eating the caller's."""
        await self.until(lambda g: g.frames > 0, timeout)

    async def until_loaded(self, timeout: float = 30.0) -> None:
        """Wait until the world around the player has loaded (after start-up)."""
        await self.until_started()
        await self.until(lambda g: g.loaded_at is not None, timeout)

    async def frames(self, n: int, timeout: float = 10.0) -> None:
        """Wait for ``n`` more frames."""
        target = self.game.frames + n
        await self.until(lambda g: g.frames >= target, timeout)

    async def sleep(self, seconds: float) -> None:
        """Let the game run for ``seconds`` (raises if it ends meanwhile)."""
        assert self.task is not None
        done, _ = await asyncio.wait({self.task}, timeout=seconds)
        if done:
            raise RuntimeError(f"the game ended (exit {self.task.result()}) while waiting")
