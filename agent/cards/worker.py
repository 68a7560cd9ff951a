"""The card's own thread: the signatures asked through the API queue up and run back to back on it.

Every call into a PKCS#11 module holds one lock (``agent/cards/pkcs11.py``), so signatures are serial however many
threads ask for them. Sent to the event loop's default executor, concurrent ``POST /v1/sign`` requests each took a
pool thread that then waited on that lock, and each signature's end had to wake the next waiting thread; here one
thread takes the next request from its queue the moment a signature ends, and the event loop only enqueues the call
and is woken once with its result.

The thread starts at the first call and ends with ``stop()`` (the card service's stop), after the calls queued
before it. A call whose caller went away (request cancelled) still runs to its end, as a worker thread's would: a
card operation cannot be interrupted, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class CardThread:
    def __init__(self, name: str = "relais-card") -> None:
        self._name = name
        self._guard = threading.Lock()
        # The running thread and its own queue: a call after stop() goes to a new thread, never behind the end mark.
        self._worker: tuple[threading.Thread, queue.SimpleQueue[_Job | None]] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the card's thread, after the calls queued before it; its result or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._guard:
            if self._worker is None:
                jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
                thread = threading.Thread(target=self._work, args=(jobs,), name=self._name, daemon=True)
                thread.start()
                self._worker = (thread, jobs)
            self._worker[1].put((fn, args, loop, future))
        return await future

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, loop, future = job
            try:
                outcome: tuple[Callable[..., None], Any] = (_succeed, fn(*args))
            except BaseException as error:  # handed to the caller, as an executor would
                outcome = (_fail, error)
            with contextlib.suppress(RuntimeError):  # the caller's loop closed meanwhile: nobody to tell
                loop.call_soon_threadsafe(outcome[0], future, outcome[1])

    def stop(self) -> None:
        """Blocking: the calls queued so far run, then the thread ends (a later call starts a new one)."""
        with self._guard:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker[1].put(None)
        if worker is not None:
            worker[0].join()
