"""A ``transformers.Trainer``'s progress output, bounded outside a terminal (see ``locinsert.progress``).

Put :class:`BoundedLogsMixin` before ``Trainer`` in a trainer's bases: its step bar and loss logs
then go through :class:`BoundedProgressCallback`.
"""

from __future__ import annotations

import math

from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..progress import LOG_INTERVAL_S, MAX_LOG_LINES, interactive

__all__ = ["BoundedProgressCallback", "BoundedLogsMixin"]


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
        super().__init__(*args, **kwargs)
        replaced = [self.pop_callback(c) for c in (ProgressCallback, PrinterCallback)]
        if any(c is not None for c in replaced):
            self.add_callback(BoundedProgressCallback())
