"""How many CPU threads torch uses, and how its idle threads wait: one policy for the CLI and the tests.

On a shared or busy machine, torch's OpenMP threads that find no free core do not just run slower:
an idle thread spins (burns a core) waiting for the others to reach the next parallel region, so
the same work costs far more CPU time. Two settings avoid that (measured in the docs' guide
"CPU threads"):

- **wait policy**: ``OMP_WAIT_POLICY=PASSIVE`` makes an OpenMP thread sleep instead of spinning
  when it has nothing to do (and ``KMP_BLOCKTIME=0`` the same for Intel's OpenMP). The OpenMP
  runtime reads these when torch is first imported, so :func:`set_wait_policy` must run before that;
- **thread count**: one thread per core this process may use (its CPU affinity). Measured against
  "only the cores free now" (fewer threads under load): with passive waiting an extra thread costs
  no CPU time, and under load it wins the process a larger share of the machine, so it finishes
  sooner for the same CPU seconds.

A value the user set (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY``, ``torch.set_num_threads`` with
``threads=``) always wins.

A process that starts work of its own in the background (the demo labels pretraining data and
trains its segmenter beside the location model) gives each background process one of its threads
while it runs: :func:`run_beside` counts it, :func:`use_free_threads` sets the count for the next
piece of work. Two busy threads on one core cost far more than one (measured in
``docs/experiments/demo-speed.md``).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

__all__ = ["WAIT_POLICY_ENV", "set_wait_policy", "usable_cores", "configure_threads", "cpu_seconds",
           "run_beside", "thread_budget", "free_threads", "use_free_threads"]

#: Environment defaults that make idle OpenMP threads sleep rather than spin.
WAIT_POLICY_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def set_wait_policy() -> bool:
    """Set :data:`WAIT_POLICY_ENV` where the environment has no value yet.

    Returns False when torch was already imported: its OpenMP runtime has read the environment,
    and the policy then only applies to processes started from this one.
    """
    for key, value in WAIT_POLICY_ENV.items():
        os.environ.setdefault(key, value)
    return "torch" not in sys.modules


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Apply the policy of the module docstring and return the torch thread count chosen.

    Args:
        threads: the number of threads to use; default ``OMP_NUM_THREADS`` when set, else
            :func:`usable_cores`.

    Returns:
        The thread count now in effect (``torch.get_num_threads()``).

    Raises:
        ValueError: ``threads`` (or ``OMP_NUM_THREADS``) is not a positive integer.
    """
    set_wait_policy()
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        value = os.environ["OMP_NUM_THREADS"]
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {value!r}") from None
    chosen = threads is not None
    if threads is None:
        threads = usable_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    import torch

    torch.set_num_threads(threads)
    _BUDGET.update(threads=torch.get_num_threads(), chosen=chosen)
    return torch.get_num_threads()


# This process's thread count and whether the user chose it (set by configure_threads), and the
# is-it-still-running checks of the background processes it started.
_BUDGET: dict = {"threads": None, "chosen": False}
_BESIDE: list[Callable[[], bool]] = []


def run_beside(running: Callable[[], bool]) -> None:
    """Count a background process this one started, until ``running()`` returns False."""
    _BESIDE.append(running)


def thread_budget() -> int:
    """This process's thread count: ``configure_threads``'s, else torch's when first asked."""
    if _BUDGET["threads"] is None:
        import torch

        _BUDGET["threads"] = torch.get_num_threads()
    return _BUDGET["threads"]


def free_threads() -> int:
    """Threads for work starting now: :func:`thread_budget` minus one per background process still
    running, at least 1. A count the user chose is kept."""
    threads = thread_budget()
    _BESIDE[:] = [running for running in _BESIDE if running()]
    return threads if _BUDGET["chosen"] else max(1, threads - len(_BESIDE))


def use_free_threads() -> int:
    """``torch.set_num_threads(free_threads())`` (when it differs); returns the count."""
    import torch

    threads = free_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process and its finished child processes
    (e.g. DataLoader workers), in seconds: what a stage costs, whatever else the machine runs."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
