"""Augment detection datasets by pasting objects where they plausibly go (``locinsert augment``).

(Not to be confused with :mod:`locinsert.data.augment`, the horizontal flips of placement training.)

>>> from locinsert.copypaste import augment
>>> report = augment("train.json", "train_aug", placement="learned", model="runs/dpo/final",
...                  per_image=(1, 3), blend="harmonize", seed=0)          # doctest: +SKIP

Reads COCO JSON or YOLO (:mod:`.formats`), pastes instances of the dataset itself, RGBA cut-outs
or an inpainter's drawing (:mod:`.sources`) at boxes chosen by the location model, at random
(Simple Copy-Paste) or by the synthetic world's oracle (:mod:`.placement`), blends them
(:mod:`.blending`), fixes the labels of what they cover (:mod:`.core`), and writes a dataset in
the same format, in shards that a rerun resumes, in process or on Ray Data (:mod:`.job`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .blending import BLENDS, blend
from .core import AugmentOptions, Augmenter, image_seed
from .formats import Annotation, DetectionDataset, ImageRecord, read_coco, read_dataset, read_yolo
from .job import ENGINES, AugmentJob, AugmentReport, run_job
from .placement import PLACEMENTS, LearnedPlacement, OraclePlacement, RandomPlacement
from .sources import DatasetInstances, FolderInstances, Instance

__all__ = ["augment", "AugmentJob", "AugmentReport", "AugmentOptions", "Augmenter", "run_job", "read_dataset",
           "read_coco", "read_yolo", "DetectionDataset", "ImageRecord", "Annotation", "LearnedPlacement",
           "RandomPlacement", "OraclePlacement", "DatasetInstances", "FolderInstances", "Instance", "blend",
           "image_seed", "BLENDS", "PLACEMENTS", "ENGINES"]

_OPTION_NAMES = {f for f in AugmentOptions.__dataclass_fields__}


def augment(input: str | os.PathLike, output: str | os.PathLike, *, placement: str = "random", model: Any = None,
            paste: str = "dataset", inpainter: Any = None, format: str | None = None,
            images: str | os.PathLike | None = None, engine: str = "local", address: str | None = None,
            workers: int = 2, num_candidates: int = 16, selection: str = "sample", region: str | None = None,
            scale_range: tuple[float, float] = (0.5, 1.5), shard_size: int = 64, batch_size: int = 8,
            device: str = "cpu", strict: bool = False, scene_of: Callable | None = None, progress: bool = True,
            **options: Any) -> AugmentReport:
    """Augment a COCO or YOLO dataset into ``output`` (resumes a killed run of the same job).

    Args:
        input: a COCO JSON file or a YOLO folder (with ``data.yaml``).
        output: the output folder: the images plus annotations in the input's format.
        placement: ``"learned"`` (the location model), ``"random"`` (Simple Copy-Paste) or
            ``"oracle"`` (the synthetic world's true placements).
        model: a ``LocationModel`` or its folder (learned placement; Ray needs the folder).
        paste: ``"dataset"``, a folder of RGBA cut-outs per class, or ``"inpainter:NAME"``.
        inpainter: an inpainter object instead (``locinsert.inpainting``; local engine).
        format: ``"coco"`` or ``"yolo"`` (default: guessed from ``input``).
        images: COCO's image folder.
        engine: ``"local"`` or ``"ray"``.
        address: Ray: the cluster to join (``None``: start a local one).
        workers: Ray: actors, each holding the model.
        num_candidates: learned placement: boxes sampled per object.
        selection: learned placement: ``"sample"`` (a plain draw) or ``"best"`` of the candidates.
        region: learned placement: a position phrase every box keeps to (``"bottom"``).
        scale_range: random placement's scale jitter.
        shard_size: images per shard, the unit of resume and of work.
        batch_size: images placed together in one model call.
        device: the location model's device.
        strict: stop at the first bad record.
        scene_of: the oracle's ``record -> Scene`` (default: read from the COCO image entry).
        progress: show a progress bar.
        **options: :class:`AugmentOptions` fields: ``per_image``, ``classes``, ``rare_boost``,
            ``copies``, ``blend``, ``feather_sigma``, ``harmonize_strength``, ``min_visible``,
            ``occluded``, ``avoid_existing``, ``seed``.

    Returns:
        The :class:`AugmentReport` (also written to ``output/augment_report.json``).

    Raises:
        ValueError: bad input (naming the file and record) or options.
        TypeError: an unknown option.
    """
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"augment() got unknown option(s) {unknown}; options are {sorted(_OPTION_NAMES)}")
    model_obj = None
    if model is not None and not isinstance(model, (str, bytes)) and not hasattr(model, "__fspath__"):
        model_obj, model = model, "<object>"
    job = AugmentJob(input=input, output=output, format=format, images=None if images is None else str(images),
                     placement=placement, model=None if model is None else str(model), paste=str(paste),
                     num_candidates=num_candidates, selection=selection, region=region,
                     scale_range=tuple(scale_range),
                     options=options, shard_size=shard_size, batch_size=batch_size, device=device, strict=strict)
    return run_job(job, engine=engine, address=address, workers=workers, model=model_obj, inpainter=inpainter,
                   scene_of=scene_of, progress=progress)
