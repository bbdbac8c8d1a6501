"""The CPU thread policy, bounded progress output outside a terminal, and labels made in the background."""

import io
from types import SimpleNamespace

import pytest
import torch

from locinsert.progress import LOG_INTERVAL_S, interactive, quiet_progress_bars
from locinsert.threads import configure_threads, cpu_seconds, set_wait_policy, usable_cores


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_configure_threads_sets_torch_and_refuses_nonsense(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert configure_threads() == usable_cores() == torch.get_num_threads()   # one per usable core
        assert configure_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads() == 1
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="positive integer"):
                configure_threads(bad)
        monkeypatch.setenv("OMP_NUM_THREADS", "many")
        with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
            configure_threads()
    finally:
        torch.set_num_threads(before)


def test_wait_policy_keeps_what_the_user_set(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    assert set_wait_policy() is False     # torch is already imported in this process
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["KMP_BLOCKTIME"] == "0"


def test_cpu_seconds_is_this_process_and_its_finished_children():
    """The sum of getrusage's user and system time for self and children (read around the call)."""
    import resource

    def usage():
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    before = usage()
    value = cpu_seconds()
    assert isinstance(value, float) and before <= value <= usage()


def test_progress_bars_are_quiet_only_outside_a_terminal(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.delenv("TQDM_MAXINTERVAL", raising=False)
    assert not interactive(io.StringIO()) and interactive(_Terminal())
    assert quiet_progress_bars(_Terminal()) is False
    import os

    assert "TQDM_MININTERVAL" not in os.environ
    assert quiet_progress_bars(io.StringIO()) is True
    assert os.environ["TQDM_MININTERVAL"] == os.environ["TQDM_MAXINTERVAL"] == str(LOG_INTERVAL_S)


def _run_logs(callback, steps, logging_steps=1, disable_tqdm=True):
    args = SimpleNamespace(disable_tqdm=disable_tqdm, logging_steps=logging_steps, output_dir="run")
    state = SimpleNamespace(max_steps=steps, global_step=0, is_world_process_zero=True, is_local_process_zero=True)
    callback.on_train_begin(args, state, None)
    for step in range(1, steps + 1):
        state.global_step = step
        callback.on_step_end(args, state, None)
        if step % logging_steps == 0:
            callback.on_log(args, state, None, logs={"loss": 1.0 / step, "total_flos": 1.0})
    callback.on_train_end(args, state, None)


def test_trainer_logs_are_bounded_outside_a_terminal(capsys):
    from locinsert.training.trainer_logs import BoundedProgressCallback

    _run_logs(BoundedProgressCallback(max_lines=10, stream=io.StringIO()), steps=2500, logging_steps=10)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert 10 <= len(lines) <= 11                   # 250 logs: every 25th, and the last one
    assert "total_flos" not in lines[0] and "'loss'" in lines[-1] and "0.0004" in lines[-1]
    _run_logs(BoundedProgressCallback(max_lines=10, stream=io.StringIO()), steps=30, logging_steps=10)
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]) == 3   # few: all


def test_trainers_use_the_bounded_callback(tmp_path):
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from locinsert import LocationModel, LocationModelConfig
    from locinsert.training.runner import ModelLossTrainer
    from locinsert.training.trainer_logs import BoundedProgressCallback

    model = LocationModel(LocationModelConfig.preset("tiny"))
    for disable in (False, True):
        args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=disable, report_to="none", use_cpu=True)
        kinds = [type(c) for c in ModelLossTrainer(model=model, args=args).callback_handler.callbacks]
        assert BoundedProgressCallback in kinds
        assert ProgressCallback not in kinds and PrinterCallback not in kinds


def test_pipe_like_started_in_the_background_gives_the_same_queries():
    from locinsert.data.synthetic import background, pipe_like

    direct = pipe_like(40, seed=4, boxes_per_scene=3)
    background.start_pipe_like(40, seed=4, boxes_per_scene=3)
    assert len(background.pending()) == 1
    background.wait_all()   # labelled, not collected: still pending, and collecting it gives the same split
    job = background._PENDING[background.pending()[0]]
    assert not job.running() and len(job.scenes) == 40 and background.pending()
    collected = pipe_like(40, seed=4, boxes_per_scene=3)
    assert background.pending() == []
    assert [(q.query_id, q.category, q.positives.tolist()) for q in collected] == \
        [(q.query_id, q.category, q.positives.tolist()) for q in direct]
    # A split started and never asked for is stopped by cancel_all; other arguments do not collect it.
    background.start_pipe_like(10, seed=5)
    assert len(pipe_like(10, seed=6)) > 0 and len(background.pending()) == 1
    background.cancel_all()
    assert background.pending() == []
    with pytest.raises(ValueError, match="boxes_per_scene"):
        background.start_pipe_like(10, boxes_per_scene=99)
    # extra boxes are part of what identifies a split: the worker labels them the same way
    direct = pipe_like(30, seed=4, boxes_per_scene=2, extra_boxes=("cup",))
    background.start_pipe_like(30, seed=4, boxes_per_scene=2)
    background.start_pipe_like(30, seed=4, boxes_per_scene=2, extra_boxes=("cup",))
    collected = pipe_like(30, seed=4, boxes_per_scene=2, extra_boxes=("cup",))
    assert len(background.pending()) == 1   # the split without extra boxes was not taken for it
    background.cancel_all()
    assert [(q.query_id, q.positives.tolist()) for q in collected] == [(q.query_id, q.positives.tolist())
                                                                        for q in direct]
    # the synthetic stages start the split their pretraining config asks for, extra boxes included
    from locinsert.training.synthetic import start_pretrain_labels

    start_pretrain_labels("unused", "quick", 0, {"boxes_per_image": 7, "synthetic_extra_boxes": "cup,bird"})
    assert [key[-2:] for key in background.pending()] == [(5, ("cup", "bird"))]
    start_pretrain_labels("unused", "quick", 0, {"boxes_per_image": 7, "synthetic_extra_boxes": "cup,bird"})
    assert len(background.pending()) == 1   # started once: a second call is a no-op
    background.cancel_all()


def test_background_processes_take_threads_only_while_they_run(monkeypatch):
    """free_threads: the process's count minus one per background process still running; a count
    the user chose stays; the labelling worker counts until its labels are computed."""
    import time

    from locinsert import threads
    from locinsert.data.synthetic import background, pipe_like

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_BESIDE", [])
    monkeypatch.setattr(threads, "_BUDGET", {"threads": None, "chosen": False})
    monkeypatch.setattr(threads, "usable_cores", lambda: 3)
    try:
        assert threads.configure_threads() == 3 and threads.free_threads() == 3
        jobs = [True, True]
        threads.run_beside(lambda: jobs[0])
        threads.run_beside(lambda: jobs[1])
        assert threads.use_free_threads() == 1 == torch.get_num_threads()   # never below one
        jobs[0] = False
        assert threads.free_threads() == 2 and threads.thread_budget() == 3
        jobs[1] = False
        assert threads.use_free_threads() == 3
        threads.configure_threads(2)             # the user's choice (--threads) is kept
        threads.run_beside(lambda: True)
        assert threads.free_threads() == 2
        threads.configure_threads()
        threads._BESIDE.clear()

        background.start_pipe_like(30, seed=7)   # the labelling worker counts until it is done
        assert threads.free_threads() in (2, 3)
        deadline = time.time() + 60
        while threads.free_threads() != 3 and time.time() < deadline:
            time.sleep(0.05)
        assert threads.free_threads() == 3 and len(background.pending()) == 1   # done, not yet collected
        assert len(pipe_like(30, seed=7)) > 0
    finally:
        background.cancel_all()
        torch.set_num_threads(before)


def test_training_runs_take_back_threads_a_finished_background_process_leaves(monkeypatch):
    from types import SimpleNamespace as NS

    from locinsert import threads
    from locinsert.training.runner import FreeThreadsCallback

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_BESIDE", [])
    monkeypatch.setattr(threads, "_BUDGET", {"threads": 2, "chosen": False})
    try:
        busy = [True]
        threads.run_beside(lambda: busy[0])
        callback = FreeThreadsCallback(every=5)
        callback.on_train_begin(None, NS(global_step=3), None)   # at the start, whatever the step (a resume)
        assert torch.get_num_threads() == 1
        busy[0] = False
        callback.on_step_begin(None, NS(global_step=3), None)   # between checks: unchanged
        assert torch.get_num_threads() == 1
        callback.on_step_begin(None, NS(global_step=5), None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
