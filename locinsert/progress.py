"""Progress output that reads well in a terminal and in a log file.

In a terminal a progress bar redraws itself in place. Written to a file or a pipe (CI, ``nohup``,
``tee``) every redraw is a new line, so a 2,500-step stage would leave thousands of lines. When the
output is not a terminal:

- tqdm bars print at most once every :data:`LOG_INTERVAL_S` seconds (plus their first and last
  line): :func:`quiet_progress_bars` sets tqdm's own ``TQDM_MININTERVAL`` / ``TQDM_MAXINTERVAL``
  defaults, which tqdm reads when it is first imported (the CLI calls it at start);
- a ``transformers.Trainer`` prints at most :data:`MAX_LOG_LINES` of its loss logs per run, evenly
  spaced, and its step bar as above (:class:`BoundedLogsMixin`, :class:`BoundedProgressCallback`).
"""

from __future__ import annotations

import math
import os
import sys

from transformers.trainer_callback import ProgressCallback

__all__ = ["LOG_INTERVAL_S", "MAX_LOG_LINES", "interactive", "quiet_progress_bars", "BoundedProgressCallback",
           "BoundedLogsMixin"]

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


class BoundedProgressCallback(ProgressCallback):
    """``ProgressCallback`` that, outside a terminal, keeps its output to a few lines per run.

    The step bar prints every :data:`LOG_INTERVAL_S` seconds at most (no bar with
    ``disable_tqdm=True``), and of the loss logs (one per ``logging_steps``) at most ``max_lines``,
    evenly spaced, plus the last one. In a terminal with the bar on, it is the Trainer's own bar.
    """

    def __init__(self, max_lines: int = MAX_LOG_LINES, stream=None):
        super().__init__()
        self.max_lines = int(max_lines)
        self.terminal = interactive(stream)
        self._bounded = True
        self._logs, self._every = 0, 1

    def on_train_begin(self, args, state, control, **kwargs):
        self._bounded = args.disable_tqdm or not self.terminal
        if not self._bounded:
            return super().on_train_begin(args, state, control, **kwargs)
        self.current_step = 0
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S)
        logs = math.ceil(state.max_steps / args.logging_steps) if args.logging_steps else 0
        self._logs, self._every = 0, max(1, math.ceil(logs / max(1, self.max_lines)))

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._bounded:
            return super().on_log(args, state, control, logs=logs, **kwargs)
        self._logs += 1
        if (self._logs - 1) % self._every and state.global_step < state.max_steps:
            return
        if not state.is_world_process_zero:
            return
        if self.training_bar is not None:
            return super().on_log(args, state, control, logs=logs, **kwargs)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (logs or {}).items() if k != "total_flos"}
        print(shown, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


class BoundedLogsMixin:
    """Put before ``transformers.Trainer`` in the bases: its progress output (bar and loss logs) is
    :class:`BoundedProgressCallback` instead of the Trainer's ``ProgressCallback`` / ``PrinterCallback``."""

    def __init__(self, *args, **kwargs):
        from transformers.trainer_callback import PrinterCallback

        super().__init__(*args, **kwargs)
        replaced = [self.pop_callback(c) for c in (ProgressCallback, PrinterCallback)]
        if any(c is not None for c in replaced):
            self.add_callback(BoundedProgressCallback())
