"""The location stages: pretrain, finetune (supervised) and dpo (and, through ``encoder.py``, the optional
image-encoder stage ``encoder``).

``run_stage`` is what the scripts in ``training/`` and ``locinsert train`` call. A stage here supplies
only its parts (``training.runner`` owns the life cycle: checks, seeding, resume, the final save, the
summary):

1. the model: a preset, or ``from_pretrained`` of the previous stage's ``final`` folder;
2. the data: the synthetic world, PIPE or OPA, read into placement queries, then into a dataset;
3. DPO: the trainer and its frozen reference (a copy of the starting model, another saved model, or
   precomputed log-probs).
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import torch
from transformers import TrainerCallback, TrainingArguments

from .config import ENCODER_STAGE, DataArguments, ModelArguments, check_stage, parse_stage_args
from .datasets import BoxDataset, CachedImageFeatures, PairDataset, collate, expand_pairs
from .runner import RunParts, RunSummary, preset_overrides, print_summary, run_training

logger = logging.getLogger(__name__)


# -- data ------------------------------------------------------------------------------------------

def resolve_dataset_format(data_args: DataArguments) -> str:
    """``synthetic`` | ``pipe`` | ``opa`` for the configured dataset."""
    path, fmt = data_args.dataset, data_args.dataset_format
    if fmt != "auto":
        return fmt
    if path == "synthetic":
        return "synthetic"
    if os.path.isdir(path):
        sub = os.path.join(path, "data")
        names = os.listdir(path) + (os.listdir(sub) if os.path.isdir(sub) else [])
        return "opa" if any(n.endswith(("_set.csv", "_data_pair.csv")) for n in names) else "pipe"
    return "opa" if path.endswith(".csv") else "pipe"  # else a hub id or a parquet file


def load_queries(data_args: DataArguments, stage: str, split: str, num_bins: int, seed: int | None = None,
                 limit: int | None = None):
    """The placement queries of one split, for a stage.

    Synthetic world: ``pretrain`` reads the PIPE-like split (one positive per scene), ``finetune`` and
    ``dpo`` the OPA-like split (positives and hard negatives); ``split="test"`` is the held-out test
    split. Boxes are snapped to the model's ``num_bins`` grid.
    """
    fmt = resolve_dataset_format(data_args)
    limit = data_args.max_train_queries if limit is None else limit
    if fmt == "synthetic":
        from ..data.synthetic import splits

        n, s = data_args.synthetic_scenes, data_args.synthetic_seed if seed is None else seed
        kw = dict(seed=s, size=data_args.synthetic_size, num_bins=num_bins)
        if split == "test":
            queries = splits.test_split(n, **kw)
        elif stage == "pretrain":
            queries = splits.pipe_like(n, **data_args.pipe_like_boxes(), **kw)
        else:
            queries = splits.opa_like(n, **kw)
    elif fmt == "pipe":
        from ..data.pipe import PipeQueries, load_pipe

        data = load_pipe(data_args.dataset, masks=data_args.masks_dataset, split=split)
        logger.info("PIPE %s: %s", split, data.report)
        queries = PipeQueries(data.dataset)
    elif fmt == "opa":
        from ..data.opa import load_opa

        queries = load_opa(data_args.dataset, split=split, images=data_args.opa_images,
                           categories=data_args.opa_categories)
        logger.info("OPA %s: %d queries; skipped: %s", split, len(queries), queries.report)
    else:
        raise ValueError(f"unknown dataset format {fmt!r}")
    if limit is not None and len(queries) > limit:
        queries = [queries[i] for i in range(limit)]
    if len(queries) == 0:
        raise ValueError(f"dataset {data_args.dataset!r} split {split!r} has no usable queries")
    return queries


# -- model -----------------------------------------------------------------------------------------

def build_model(model_args: ModelArguments):
    """A saved model (``model_name_or_path``) or a new one from ``preset``."""
    from ..modeling import LocationModel, LocationModelConfig

    if model_args.model_name_or_path:
        model = LocationModel.from_pretrained(model_args.model_name_or_path)
        return model.enable_region_conditioning() if model_args.region_conditioning else model
    overrides = preset_overrides(model_args)
    if model_args.image_encoder_checkpoint:
        from ..modeling.dense_encoder import image_encoder_overrides

        base = LocationModelConfig.preset(model_args.preset, pretrained=False, **overrides)
        overrides = {**overrides, **image_encoder_overrides(model_args.image_encoder_checkpoint, base)}
    if model_args.region_conditioning:
        overrides["region_conditioning"] = True
    cfg = LocationModelConfig.preset(model_args.preset, pretrained=model_args.pretrained_encoders, **overrides)
    return LocationModel(cfg)


def build_dataset(stage: str, queries, model, data_args: DataArguments, seed: int = 0, features=None):
    """``BoxDataset`` for the supervised stages, ``PairDataset`` for DPO."""
    if data_args.region_prob and not getattr(model.config, "region_conditioning", False):
        raise ValueError(f"region_prob={data_args.region_prob} needs a region-conditioned model: "
                         "set region_conditioning=True")
    preprocess = getattr(model, "preprocessor", None) or model.preprocess
    kw = dict(num_bins=model.config.num_bins, preprocess=preprocess, features=features, hflip=data_args.hflip,
              region_prob=data_args.region_prob, region_seed=seed)
    if stage == "dpo":
        pairs = expand_pairs(queries, data_args.pairs_per_query, seed=seed)
        return PairDataset(queries, pairs, pairs_per_image=data_args.pairs_per_image, **kw)
    return BoxDataset(queries, boxes_per_image=data_args.boxes_per_image, **kw)


def cache_namespace(data_args: DataArguments, stage: str, split: str) -> str:
    """Prefix of feature-cache keys: image ids are unique within one dataset split only."""
    fmt = resolve_dataset_format(data_args)
    if fmt == "synthetic":
        kind = "test" if split == "test" else ("pipe_like" if stage == "pretrain" else "opa_like")
        return f"synthetic/{kind}/seed{data_args.synthetic_seed}/size{data_args.synthetic_size}/"
    return f"{fmt}/{data_args.dataset}/{split}/"


def prepare_feature_cache(model, queries, data_args: DataArguments, stage: str, split: str, progress: bool = True
                          ) -> CachedImageFeatures:
    """Fill the image-feature cache for ``queries`` (each process its share), then open it for reading."""
    from accelerate import PartialState

    from ..data.feature_cache import FeatureCache

    if not model.config.freeze_image_encoder:
        raise ValueError("feature_cache needs a frozen image encoder (freeze_image_encoder=True): the features "
                         "of an encoder that is being trained change at every step")
    state = PartialState()
    features = CachedImageFeatures(FeatureCache.for_model(model, data_args.feature_cache),
                                   cache_namespace(data_args, stage, split))
    features.fill(queries, hflip=data_args.hflip, rank=state.process_index, world_size=state.num_processes,
                  progress=progress)
    state.wait_for_everyone()
    features.cache.refresh()
    return features


@torch.no_grad()
def precompute_reference_logps(ref_model, dataset: PairDataset, batch_size: int = 64, device=None,
                               progress: bool = True) -> PairDataset:
    """Score every pair once with the frozen reference; the trainer then needs no reference model."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .dpo import disable_dropout, pair_logps

    device = device or next(ref_model.parameters()).device
    disable_dropout(ref_model)
    was_training = ref_model.training
    ref_model.eval()
    chosen, rejected = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in tqdm(loader, desc="reference log-probs", disable=not progress):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        c, r, _ = pair_logps(ref_model, batch)
        k = dataset.pairs_per_image  # grouped batches come in blocks: back to one row per example
        chosen.append(c.float().cpu().view(k, -1).T)
        rejected.append(r.float().cpu().view(k, -1).T)
    ref_model.train(was_training)
    return dataset.with_reference(torch.cat(chosen), torch.cat(rejected))


# -- running ---------------------------------------------------------------------------------------

StageResult = RunSummary  # what run_stage returns (and writes to run_summary.json)


def location_parts(stage: str, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                   model=None, train_dataset=None, features=None) -> RunParts:
    """The model, data and trainer of a location stage (pretrain, finetune, dpo)."""
    if model is None:
        model = build_model(model_args)
    if train_dataset is None:
        queries = load_queries(data_args, stage, data_args.train_split, model.config.num_bins)
        if features is None and data_args.feature_cache:
            model.to(training_args.device)
            features = prepare_feature_cache(model, queries, data_args, stage, data_args.train_split,
                                             progress=not training_args.disable_tqdm)
        train_dataset = build_dataset(stage, queries, model, data_args, seed=training_args.seed, features=features)
    eval_dataset = None
    if data_args.eval_split:
        eval_queries = load_queries(data_args, stage, data_args.eval_split, model.config.num_bins,
                                    limit=data_args.max_eval_queries)
        eval_dataset = build_dataset(stage, eval_queries, model, data_args, seed=training_args.seed)
    parts = RunParts(model=model, train_dataset=train_dataset, data_collator=collate, eval_dataset=eval_dataset)
    if stage == "dpo":
        from ..modeling import LocationModel
        from .dpo import BoxDPOTrainer

        ref = model_args.ref_model_name_or_path
        ref_model = LocationModel.from_pretrained(ref) if ref else None
        if getattr(training_args, "precompute_ref_log_probs", False) and train_dataset.ref_chosen_logps is None:
            scorer = ref_model if ref_model is not None else model
            scorer.to(training_args.device)
            batch_size = training_args.precompute_ref_batch_size or training_args.per_device_train_batch_size
            precompute_reference_logps(scorer, train_dataset, batch_size, progress=not training_args.disable_tqdm)
        if train_dataset.ref_chosen_logps is not None:
            ref_model = False
        parts.trainer_class, parts.trainer_kwargs = BoxDPOTrainer, {"ref_model": ref_model}
    return parts


def run_stage(stage: str, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
              callbacks: Sequence[TrainerCallback] = (), model=None, train_dataset=None, features=None
              ) -> RunSummary:
    """Train one stage end to end (``training.runner``'s life cycle); see the module docstring.

    ``model`` / ``train_dataset`` override the ones the arguments describe (for callers that already hold them).
    """
    if check_stage(stage) == ENCODER_STAGE:
        from .encoder import run_encoder_stage

        return run_encoder_stage(model_args, data_args, training_args, callbacks, model)
    return run_training(stage, training_args, lambda: location_parts(stage, model_args, data_args, training_args,
                                                                     model, train_dataset, features), callbacks)


def main(stage: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of the ``training/`` scripts: ``[--config cfg.yaml] [--field value ...]``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_args, data_args, training_args = parse_stage_args(stage, argv, prog)
    print_summary(run_stage(stage, model_args, data_args, training_args), training_args)
    return 0
