"""Progress output that reads well in a terminal and in a log file.

In a terminal a progress bar redraws itself in place. Written to a file or a pipe (CI, ``nohup``,
``tee``) every redraw is a new line, so a 2,500-step stage would leave thousands of lines. When the
output is not a terminal:

- tqdm bars print at most once every :data:`LOG_INTERVAL_S` seconds (plus their first and last
  line): :func:`quiet_progress_bars` sets tqdm's own ``TQDM_MININTERVAL`` / ``TQDM_MAXINTERVAL``
  defaults, which tqdm reads when it is first imported (the CLI calls it at start);
- a ``transformers.Trainer`` prints at most :data:`MAX_LOG_LINES` of its loss logs per run, evenly
  spaced, and its step bar as above (``locinsert.training.trainer_logs``).

This module imports nothing heavy: the CLI calls :func:`quiet_progress_bars` before tqdm is imported.
"""

from __future__ import annotations

import os
import sys

__all__ = ["LOG_INTERVAL_S", "MAX_LOG_LINES", "interactive", "quiet_progress_bars"]

#: Seconds between two lines of one progress bar when the output is not a terminal.
LOG_INTERVAL_S = 30
#: Loss-log lines a Trainer prints per run when the output is not a terminal.
MAX_LOG_LINES = 10


def interactive(stream=None) -> bool:
    """True when ``stream`` (default: stderr, where bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def quiet_progress_bars(stream=None) -> bool:
    """Outside a terminal, make tqdm print every :data:`LOG_INTERVAL_S` seconds at most.

    Values already in the environment win. Returns True when the defaults were set; they apply to
    tqdm imported after this call (tqdm reads its environment defaults at import).
    """
    if interactive(stream):
        return False
    os.environ.setdefault("TQDM_MININTERVAL", str(LOG_INTERVAL_S))
    os.environ.setdefault("TQDM_MAXINTERVAL", str(LOG_INTERVAL_S))
    return True
