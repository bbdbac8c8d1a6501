"""The three stages on the synthetic world, within a CPU budget, and the learning table.

``run_synthetic_stages(out_dir, budget="default")`` pretrains on the PIPE-like split, fine-tunes on
the OPA-like positives, runs DPO on the OPA-like (positive, negative) pairs with the fine-tuned
model as the frozen reference, and (``evaluate=True``) scores every stage and two baselines on the
held-out test split: oracle precision, coverage, TPR/FPR at K = 10 and 100.

Every budget first trains the image encoder on the world's per-pixel part labels (stage
``encoder``); the location model starts from it, frozen. The budgets are the same stages as
``training/configs/synthetic_*.yaml``, sized for a 2-core CPU: ``quick`` (about a minute, for
``locinsert demo --quick`` and tests: a smoke run), ``default`` (the demo's, 5 to 7 minutes) and
``long`` (under an hour, where the method goes with more examples).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .config import ENCODER_STAGE, STAGES, load_stage_config

# DPO plus an SFT term on the chosen box: plain DPO lowers log p(chosen) too and lost coverage when
# both were measured (on an earlier budget; the figures are in the README's git history).
_DPO_LOSS = dict(beta=0.1, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])

def _budget(test_scenes: int, encoder: int, pretrain: int, finetune: int, dpo: int, batch: int = 32,
            dpo_lr: float = 5e-4) -> dict:
    """One budget: the test split's size and each stage's overrides of its config fields (scene counts,
    one epoch each, the encoder at twice the batch)."""
    def stage(scenes, bs, lr, **extra):
        return dict(synthetic_scenes=scenes, num_train_epochs=1, per_device_train_batch_size=bs, learning_rate=lr,
                    **extra)

    return {"test_scenes": test_scenes,
            "encoder": stage(encoder, 2 * batch, 2e-3),
            "pretrain": stage(pretrain, batch, 2e-3, boxes_per_image=6, synthetic_extra_boxes="cup"),
            "finetune": stage(finetune, batch, 1e-4),
            "dpo": stage(dpo, batch, dpo_lr, pairs_per_query=4, **_DPO_LOSS)}


# Per budget: the world's sizes and each stage's overrides of its config fields. Pretraining labels
# six objects per scene, five balanced over the classes and a second cup (boxes_per_image=6,
# synthetic_extra_boxes="cup"): the scene's image runs through the encoder and the decoder's image
# tokens once for six boxes (more precision per box and per second than one box per scene), and the
# cup, the class learnt last, learns from its box count rather than the scene count (both measured
# in docs/experiments/synthetic-learning.md); `long` is the same stages, scaled (under an hour on 2 cores).
SYNTHETIC_BUDGETS: dict[str, dict] = {
    "quick": _budget(40, encoder=1000, pretrain=400, finetune=120, dpo=60, batch=16, dpo_lr=1e-4),
    "default": _budget(200, encoder=20000, pretrain=60000, finetune=1000, dpo=1000),
    "long": _budget(200, encoder=80000, pretrain=240000, finetune=8000, dpo=4000),
}


def _synthetic_decoder_without_dropout() -> dict:
    # Every synthetic example is a fresh scene: dropout only slows learning within a CPU budget.
    from ..modeling.config import PRESETS

    return {**PRESETS["synthetic"]["decoder_config"], "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}

# Fields common to the three synthetic stages.
_COMMON = dict(dataset="synthetic", preset="synthetic", logging_steps=10, save_steps=200, save_total_limit=1,
               warmup_steps=0.05, lr_scheduler_type="cosine", dataloader_num_workers=0)

# finetune and dpo share the OPA-like scenes; the encoder's scenes come from a stream of their own
STAGE_SEEDS = {"encoder": 0, "pretrain": 0, "finetune": 1, "dpo": 1}


def synthetic_stage_fields(stage: str, out_dir: str, budget: str = "default", seed: int = 0, **overrides) -> dict:
    """The config fields (a flat mapping, as in a YAML config) of one synthetic stage under a budget.

    The stage reads ``<out_dir>/<previous stage>/final`` as its starting model (finetune, dpo), and
    pretrain the encoder stage's ``<out_dir>/encoder/final`` as its frozen image tower (an override
    ``image_encoder_checkpoint=None`` trains the preset's own tower instead). An override of None
    leaves a field at its default. ``training/configs/synthetic_*.yaml`` are these fields for the
    default budget.
    """
    if budget not in SYNTHETIC_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(SYNTHETIC_BUDGETS)}")
    fields = {**_COMMON, **SYNTHETIC_BUDGETS[budget][stage]}
    fields["output_dir"] = os.path.join(out_dir, stage)
    fields["synthetic_seed"] = 1000 * seed + STAGE_SEEDS[stage]
    fields["seed"] = seed
    prev = {"finetune": "pretrain", "dpo": "finetune"}.get(stage)
    if prev is not None:
        fields["model_name_or_path"] = os.path.join(out_dir, prev, "final")
    if stage == "pretrain" and ENCODER_STAGE in SYNTHETIC_BUDGETS[budget]:
        fields["image_encoder_checkpoint"] = os.path.join(out_dir, ENCODER_STAGE, "final")
    fields.update(overrides)
    fields = {k: v for k, v in fields.items() if v is not None}  # an override of None: the field's default
    if stage == "pretrain" and fields["preset"] == "synthetic" and "preset_overrides" not in overrides:
        fields["preset_overrides"] = {"decoder_config": _synthetic_decoder_without_dropout()}
    return fields


def synthetic_stage_args(stage: str, out_dir: str, budget: str = "default", seed: int = 0, **overrides):
    """``(model_args, data_args, training_args)`` of one synthetic stage under a budget."""
    return load_stage_config(stage, None, **synthetic_stage_fields(stage, out_dir, budget, seed, **overrides))


def synthetic_config_yaml(stage: str, budget: str = "default", out_dir: str = "runs/synthetic") -> str:
    """The YAML config of one synthetic stage (what ``training/configs/synthetic_<stage>.yaml`` holds)."""
    import yaml

    head = (f"# Synthetic world, stage '{stage}', budget '{budget}' (written by "
            f"locinsert.training.synthetic.synthetic_config_yaml).\n"
            f"#   locinsert train {stage} --config training/configs/synthetic_{stage}.yaml\n")
    return head + yaml.safe_dump(synthetic_stage_fields(stage, out_dir, budget), sort_keys=False)


def synthetic_test_queries(budget: str = "default", seed: int = 0, num_bins: int = 32,
                           test_scenes: int | None = None) -> list:
    """The held-out test split every synthetic evaluation (learning table, demo) scores on."""
    from ..data.synthetic import splits

    n = test_scenes or SYNTHETIC_BUDGETS[budget]["test_scenes"]
    return splits.test_split(n, seed=1000 * seed + 7, num_bins=num_bins)


def synthetic_finetune_queries(budget: str = "default", seed: int = 0, num_bins: int = 32) -> list:
    """The OPA-like scenes the finetune (and DPO) stage trains on: the class prior is fitted on them."""
    from ..data.synthetic import splits

    fields = synthetic_stage_fields("finetune", "", budget, seed)
    return splits.opa_like(fields["synthetic_scenes"], seed=fields["synthetic_seed"], num_bins=num_bins)


@dataclass
class SyntheticReport:
    """What ``run_synthetic_stages`` returns: per-stage results, the learning table, timings."""

    out_dir: str
    budget: str
    results: dict = field(default_factory=dict)
    table: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    cpu_seconds: dict = field(default_factory=dict)   # user + system, this process and its workers


def budget_stages(budget: str) -> tuple[str, ...]:
    """The stages a budget runs, in order: the encoder stage when it has one, then the location stages."""
    if budget not in SYNTHETIC_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(SYNTHETIC_BUDGETS)}")
    return tuple(s for s in (ENCODER_STAGE, *STAGES) if s in SYNTHETIC_BUDGETS[budget])


def run_synthetic_stages(out_dir: str, budget: str = "default", seed: int = 0, stages=None,
                         evaluate: bool = True, progress: bool = True, overrides: dict | None = None,
                         test_scenes: int | None = None, before_stage=None) -> SyntheticReport:
    """Pretrain -> finetune -> DPO on the synthetic world, then (``evaluate``) the learning table.

    ``overrides``: ``{stage: {field: value}}`` on top of the budget; ``test_scenes``: size of the test
    split (default: the budget's); ``before_stage``: called with each stage's name before it starts (the
    demo starts its segmenter's training beside pretraining). Each stage trains on the threads that the
    background processes leave free (``runner.FreeThreadsCallback``); the count is restored at the end.
    Re-running with the same ``out_dir`` resumes an interrupted stage from its last checkpoint. Returns a :class:`SyntheticReport`.
    """
    import torch
    from tqdm.auto import tqdm

    from ..threads import cpu_seconds
    from .stages import run_stage

    overrides = overrides or {}
    stages = budget_stages(budget) if stages is None else tuple(stages)
    report = SyntheticReport(out_dir=out_dir, budget=budget)
    bar = tqdm(list(stages), desc="synthetic stages", unit="stage", disable=not progress)
    threads = torch.get_num_threads()
    try:
        if ENCODER_STAGE in stages and "pretrain" in stages:
            start_pretrain_labels(out_dir, budget, seed, overrides.get("pretrain"))
        for stage in bar:
            bar.set_postfix_str(stage)
            if before_stage is not None:
                before_stage(stage)
            model_args, data_args, train_args = synthetic_stage_args(
                stage, out_dir, budget, seed, disable_tqdm=not progress, **overrides.get(stage, {}))
            t0, c0 = time.time(), cpu_seconds()
            report.results[stage] = run_stage(stage, model_args, data_args, train_args)
            report.seconds[stage] = round(time.time() - t0, 1)
            report.cpu_seconds[stage] = round(cpu_seconds() - c0, 1)
    finally:
        from ..data.synthetic.background import cancel_all

        cancel_all()
        torch.set_num_threads(threads)
    if evaluate:
        t0 = time.time()
        report.table = learning_table(out_dir, budget=budget, seed=seed, stages=[s for s in stages if s in STAGES],
                                      progress=progress,
                                      test_scenes=test_scenes)
        report.seconds["evaluation"] = round(time.time() - t0, 1)
    return report


def start_pretrain_labels(out_dir: str, budget: str = "default", seed: int = 0, overrides: dict | None = None) -> None:
    """Start labelling pretraining's PIPE-like split in a worker process, to overlap the encoder stage
    (``locinsert.data.synthetic.background``); pretraining collects it, or generates it itself when
    its arguments turn out different. ``run_synthetic_stages`` calls it; calling it earlier (the demo
    does, before its data step) gives the worker a head start, and a second call starts nothing."""
    overrides = overrides or {}
    from ..data.synthetic.background import start_pipe_like
    from ..modeling import LocationModelConfig

    fields = synthetic_stage_fields("pretrain", out_dir, budget, seed, **overrides)
    if fields.get("dataset") != "synthetic":
        return
    preset = fields.get("preset_overrides") if isinstance(fields.get("preset_overrides"), dict) else {}
    num_bins = preset.get("num_bins") or LocationModelConfig.preset(fields["preset"]).num_bins
    _, data_args, _ = synthetic_stage_args("pretrain", out_dir, budget, seed, **overrides)  # what the stage reads
    start_pipe_like(data_args.synthetic_scenes, seed=data_args.synthetic_seed, size=data_args.synthetic_size,
                    num_bins=num_bins, **data_args.pipe_like_boxes())


def learning_table(out_dir: str, budget: str = "default", seed: int = 0, stages=STAGES, ks=(10, 100),
                   test_scenes: int | None = None, progress: bool = True, image_ablation: bool = True) -> list[dict]:
    """Each trained stage and the random / class-prior baselines on the held-out test split, and
    (``image_ablation``) the last stage again with the images shuffled across queries.

    One row per method: ``method``, and for each K in ``ks``: ``oracle_precision@K``, ``coverage@K``,
    ``tpr@K``, ``fpr@K``; plus ``tpr@fpr=F`` for F in ``MATCHED_FPRS``: the TPR of the method's
    curve over K = 10, 20, ..., 100 at that FPR (interpolated), to compare methods at matched FPR
    (``locinsert.evaluation.tables``).
    """
    from ..evaluation import ClassPrior, RandomBoxes, curve_row, evaluate, shuffle_images
    from ..modeling import LocationModel

    models = {s: LocationModel.from_pretrained(os.path.join(out_dir, s, "final")).eval() for s in stages}
    num_bins = next(iter(models.values())).config.num_bins if models else 32
    test = synthetic_test_queries(budget, seed, num_bins, test_scenes)
    train = synthetic_finetune_queries(budget, seed, num_bins)
    methods = {"random": RandomBoxes(num_bins=num_bins), "class prior": ClassPrior.fit(train),
               **{_STAGE_NAMES[s]: m for s, m in models.items()}}
    grid = sorted(set(range(10, max(ks) + 1, 10)) | set(ks))
    rows = []
    for name, model in methods.items():
        curve = evaluate(model, test, ks=grid, seed=seed, progress=progress, name=name, per_category=True)
        rows.append(curve_row(curve, ks))
    if models and image_ablation:
        last = list(models)[-1]
        curve = evaluate(models[last], shuffle_images(test), ks=grid, seed=seed, progress=progress,
                         name=f"{_STAGE_NAMES[last]}, images shuffled", per_category=True)
        rows.append(curve_row(curve, ks))
    return rows


_STAGE_NAMES = {"pretrain": "1. pretrain (PIPE-like)", "finetune": "2. + finetune (OPA-like positives)",
                "dpo": "3. + DPO (OPA-like pairs)"}


__all__ = ["SYNTHETIC_BUDGETS", "synthetic_stage_args", "run_synthetic_stages", "learning_table", "budget_stages",
           "SyntheticReport", "start_pretrain_labels"]


def main(argv=None, prog: str | None = None) -> int:
    """``locinsert train synthetic``: every stage on the synthetic world, then the learning table."""
    import sys

    from ..argtypes import Parser, seed
    from ..evaluation import format_class_table, format_learning_table
    from ..io import check_output_dir

    p = Parser(prog=prog, description="Pretrain, finetune and DPO on the synthetic world, then "
                                                       "print each stage's figures on the held-out test split.")
    p.add_argument("--out", default="runs/synthetic", help="output folder (one subfolder per stage)")
    p.add_argument("--budget", default="default",
                   help="quick (about a minute, a smoke run), default (the demo's, 5 to 7 minutes on 2 cores) or long "
                        "(under an hour)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the world and of training (0 <= seed < 2**31)")
    p.add_argument("--no-eval", action="store_true", help="train only, skip the learning table")
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    check_output_dir(opts.out)
    report = run_synthetic_stages(opts.out, budget=opts.budget, seed=opts.seed, evaluate=not opts.no_eval)
    if report.table:
        print(format_learning_table(report.table))
        print("\noracle precision per class (K=100):\n" + format_class_table(report.table))
    return 0
