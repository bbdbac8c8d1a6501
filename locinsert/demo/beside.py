"""One piece of the demo's work in a second process, on one thread, while this process does another.

The demo has steps that need nothing from each other: the app's segmenter does not need the location
model, and the positional-prompt benchmark does not need the evaluation. On a machine with a core to
spare, one of them runs here while the other runs beside it::

    job = Beside(train_demo_textmask, out_dir, "default", 0)   # starts now; counts as a busy core
    ...                                                          # this process's own work
    result = job.result()                                        # its return value (or its error)

The process is a fresh interpreter (``spawn``: no OpenMP state is inherited from this process's
threads) and runs the function on one thread; ``result()`` adds the ``wall_seconds`` the function
took and the ``cpu_seconds`` of the whole process (its imports included).
While it runs, :func:`locinsert.threads.run_beside` counts it, so this process's next piece of work
takes one thread fewer.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable

__all__ = ["Beside"]


class Beside:
    """``fn(*args)`` running in a process of its own, one thread; see the module docstring.

    ``fn`` must be importable by name (a module-level function) and return something picklable.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any):
        from ..threads import run_beside

        self._pool = multiprocessing.get_context("spawn").Pool(1)
        self._job = self._pool.apply_async(_timed_on_one_thread, (fn, *args))
        run_beside(self.running)

    def running(self) -> bool:
        """Whether the function is still running (False once it returned, failed or was closed)."""
        return self._pool is not None and not self._job.ready()

    def result(self) -> Any:
        """Wait for the function and return its value (a dict gains ``wall_seconds`` and the process's
        ``cpu_seconds``); its error, if it failed."""
        try:
            value = self._job.get()
        except BaseException:
            self.close()
            raise
        self._pool.close()   # let the process end by itself: killing it leaks the pool's semaphores
        self._pool.join()
        self._pool = None
        return value

    def close(self) -> None:
        """Stop the process at once (when it is still running); nothing when it has ended."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


def _timed_on_one_thread(fn: Callable[..., Any], *args: Any) -> Any:
    from ..threads import configure_threads, cpu_seconds

    configure_threads(1)
    t0 = time.time()
    value = fn(*args)
    if isinstance(value, dict):   # the process's whole CPU time, its imports included
        value = {**value, "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu_seconds(), 1)}
    return value
