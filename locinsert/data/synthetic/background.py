"""Generate a PIPE-like split in a background worker while the caller trains something else.

Labelling the pretraining split is single-threaded numpy (about a minute for the demo's budget).
The encoder stage that comes before it does not need it, so the demo starts it first, in one
``torch.utils.data.DataLoader`` worker process, and collects it when pretraining asks for it:

    start_pipe_like(60000, seed=0, num_bins=32, boxes_per_scene=5)   # returns at once
    ...                                                              # train the encoder
    pipe_like(60000, seed=0, num_bins=32, boxes_per_scene=5)          # the worker's result

The worker computes exactly what :func:`~locinsert.data.synthetic.splits.pipe_like` computes (the
same code, the same seeds), so the queries do not depend on whether the split was started early.
Both processes draw the scenes from the same seed: the worker to label them, the caller when it
collects the labels (while the worker finishes), so only three arrays cross between them and the
caller's start returns at once (drawing the demo's 60,000 scenes takes several seconds).
"""

from __future__ import annotations

import logging
import multiprocessing

from torch.utils.data import DataLoader, Dataset

from ...threads import run_beside
from .splits import STARTED as _PENDING
from .splits import (_check_boxes_per_scene, _check_split_args, check_extra_boxes, pipe_like_key, pipe_like_labels,
                     pipe_like_queries, pipe_like_scenes)

logger = logging.getLogger(__name__)

__all__ = ["start_pipe_like", "collect", "wait_all", "cancel_all", "pending"]


class _LabelTask(Dataset):
    """One item: the labels of a PIPE-like split (its scenes drawn and labelled in the worker process)."""

    def __init__(self, num_scenes, seed, size, num_bins, classes, boxes_per_scene, extra_boxes=()):
        self.scenes_args = (num_scenes, seed, size)
        self.args = (seed, num_bins, classes, boxes_per_scene, extra_boxes)
        self.done = _CONTEXT.Event()   # set in the worker when the labels are computed

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        try:
            return pipe_like_labels(pipe_like_scenes(*self.scenes_args), *self.args)
        finally:
            self.done.set()


# The worker's start method; the task's Event must come from the same one.
_CONTEXT = multiprocessing.get_context()


def _as_is(item):
    return item   # keep the numpy arrays (the default collate would turn them into tensors)


class _Job:
    def __init__(self, classes, task: _LabelTask):
        self.classes, self.task, self.scenes = classes, task, None
        loader = DataLoader(task, batch_size=None, num_workers=1, collate_fn=_as_is, multiprocessing_context=_CONTEXT)
        self.iterator = iter(loader)   # the worker starts now and computes the one item
        self.running = lambda: self.iterator is not None and not task.done.is_set()

    def wait(self) -> None:
        """Draw the scenes here (the worker's own, from the same seed) while the worker finishes, then
        wait until its labels are computed."""
        if self.scenes is None:
            self.scenes = pipe_like_scenes(*self.task.scenes_args)
        if self.iterator is not None:
            self.task.done.wait()

    def result(self):
        logger.info("collecting the PIPE-like split generated in the background")
        try:
            self.wait()
            labels = next(self.iterator)
        finally:
            self.close()
        return pipe_like_queries(self.scenes, labels, self.classes)

    def close(self) -> None:
        self.iterator = None   # the DataLoader iterator stops its worker when it is released


def start_pipe_like(num_scenes: int, seed: int = 0, size: int = 64, num_bins: int | None = 32, classes=None,
                    boxes_per_scene: int = 1, extra_boxes=()) -> tuple:
    """Start generating ``pipe_like(...)`` (same arguments) in a worker process; returns its key.

    Raises:
        ValueError: the arguments are ones ``pipe_like`` refuses.
    """
    classes = _check_split_args(num_scenes, classes, num_bins)
    _check_boxes_per_scene(boxes_per_scene, classes)
    extra_boxes = check_extra_boxes(extra_boxes, classes)
    key = pipe_like_key(num_scenes, seed, size, num_bins, classes, boxes_per_scene, extra_boxes)
    if key not in _PENDING:
        task = _LabelTask(num_scenes, seed, size, num_bins, classes, boxes_per_scene, extra_boxes)
        _PENDING[key] = _Job(classes, task)
        run_beside(_PENDING[key].running)   # the worker takes a core from this process's threads
    return key


def collect(key: tuple):
    """The queries of the split started under ``key`` (waiting for the worker if needed), or None
    when none was started."""
    job = _PENDING.pop(key, None)
    if job is None:
        return None
    return job.result()


def wait_all() -> None:
    """Wait until every split started is labelled, without collecting it (its scenes are drawn here
    meanwhile). The demo calls it before starting other background work, so that the worker's core
    is free by then."""
    for job in list(_PENDING.values()):
        job.wait()


def pending() -> list[tuple]:
    """Keys of the splits started and not collected yet."""
    return list(_PENDING)


def cancel_all() -> None:
    """Stop every worker whose split was not collected (e.g. a run that failed before needing it)."""
    while _PENDING:
        _PENDING.popitem()[1].close()
