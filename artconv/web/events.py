"""How changes reach the page: one server-sent event stream, woken by the studio.

The studio bumps `Changes` on everything a page shows (a step, a preview, a status, a
sweep's sheet), from whichever thread made the change; each open stream is woken then (no
polling), sends what changed, and waits at least `interval` before the next message, so a
burst of steps is one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

KEEPALIVE_SECONDS = 15.0  # a comment line now and then: proxies keep the stream open


class _Listener:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.pending = False  # a wake-up is on its way: further changes need none


class Changes:
    """A count of the studio's changes, and the event streams it wakes."""

    def __init__(self) -> None:
        self.version = 0
        self._lock = threading.Lock()
        self._listeners: set[_Listener] = set()

    def bump(self) -> int:
        """One more change (call it once the change is made); the new version."""
        with self._lock:
            self.version += 1
            waking = [x for x in self._listeners if not x.pending]
            for listener in waking:
                listener.pending = True
        for listener in waking:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody listens
                listener.loop.call_soon_threadsafe(listener.event.set)
        return self.version

    @contextlib.contextmanager
    def listen(self) -> Iterator[_Listener]:
        listener = _Listener(asyncio.get_running_loop())
        with self._lock:
            self._listeners.add(listener)
        try:
            yield listener
        finally:
            with self._lock:
                self._listeners.discard(listener)

    async def wait(self, listener: _Listener, timeout: float) -> bool:
        """Until the next change (True), or `timeout` seconds without one (False)."""
        try:
            await asyncio.wait_for(listener.event.wait(), timeout)
        except TimeoutError:
            return False
        with self._lock:  # before the caller looks: a change after this wakes it again
            listener.event.clear()
            listener.pending = False
        return True


def message(data: Any, event: str | None = None) -> str:
    """One server-sent event."""
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


async def stream(changes: Changes, look: Callable[[], tuple[list[str], bool]], *,
                 interval: float) -> AsyncIterator[str]:
    """Server-sent events: `look()` gives the messages for what changed since it last
    looked and whether the stream ends; it is called at the start and on every change,
    at most once per `interval` seconds."""
    with changes.listen() as listener:
        while True:
            messages, end = look()
            for text in messages:
                yield text
            if end:
                return
            if not await changes.wait(listener, KEEPALIVE_SECONDS):
                yield ": keep-alive\n\n"
                continue
            await asyncio.sleep(interval)
