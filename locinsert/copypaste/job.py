"""The augmentation job: shards, engines (in process or Ray Data), resume, and the final dataset.

The images (times ``copies``) are cut, in key order, into shards of ``shard_size``. A shard is
the unit of work and of resume: its images are written first (each atomically), then its marker
``<out>/.augment/shards/<n>.json``, which holds the shard's labels. A rerun skips the shards that
have a marker and redoes the others, overwriting any image a killed run left behind (the names
are fixed), so a killed job leaves neither duplicates nor gaps. When every shard is done, the
annotation file(s) are written from the markers, atomically.

Determinism: each image's draws are seeded from ``(seed, key, copy)``; the location model samples
a batch of images (``batch_size``, cut the same way inside every shard) with a generator seeded
from the batch's keys. So the output depends on the seed, ``shard_size`` and ``batch_size``,
never on the engine or the number of workers.

``engine="ray"`` runs the shards on Ray Data: ``map_batches`` with an actor class, so each actor
loads the location model once (and takes a GPU with ``device="cuda"``). ``address=None`` starts a
local Ray with ``workers`` CPUs; a cluster address (``"auto"``, ``"ray://host:10001"``) joins it,
and every node then needs locinsert installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..io import save_image_atomic, write_file_atomic, write_json_atomic, write_text_atomic
from .core import AugmentOptions, Augmenter
from .formats import DetectionDataset, read_dataset

__all__ = ["AugmentJob", "AugmentReport", "run_job", "build_augmenter", "ENGINES", "STATE_DIR"]

ENGINES = ("local", "ray")
STATE_DIR = ".augment"


@dataclass
class AugmentJob:
    """Everything that defines the output (JSON-serialisable, so Ray workers rebuild it).

    Args:
        input: a COCO JSON file or a YOLO folder.
        output: the output folder (created).
        format: ``"coco"`` or ``"yolo"`` (default: a folder is YOLO, a file COCO).
        images: COCO's image folder (default: next to the JSON file).
        placement: ``"learned"``, ``"random"`` or ``"oracle"``.
        model: the location model folder (learned placement).
        paste: ``"dataset"`` (copy-paste of the dataset's own instances), a folder of RGBA
            cut-outs per class, or ``"inpainter:NAME"`` (a ``locinsert.inpainting.BACKENDS`` name).
        num_candidates: boxes the model samples per object.
        selection: ``"sample"`` (a plain draw) or ``"best"`` (most likely of the candidates).
        region: learned placement: a position phrase every box keeps to (``"bottom"``,
            ``"top left"``: ``Region.parse``, centre mode), on top of the avoided boxes.
        scale_range: random placement's scale jitter.
        options: the per-image :class:`~locinsert.copypaste.core.AugmentOptions` as a dict.
        shard_size: images per shard (the unit of resume and of work).
        batch_size: images placed together in one model call.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for the location model.
        strict: stop at the first bad record instead of skipping it.
    """

    input: str
    output: str
    format: str | None = None
    images: str | None = None
    placement: str = "random"
    model: str | None = None
    paste: str = "dataset"
    num_candidates: int = 16
    selection: str = "sample"
    region: str | None = None
    scale_range: tuple[float, float] = (0.5, 1.5)
    options: dict = field(default_factory=dict)
    shard_size: int = 64
    batch_size: int = 8
    device: str = "cpu"
    strict: bool = False

    def __post_init__(self):
        from ..validation import check_choice, check_int
        from .placement import PLACEMENTS, SELECTIONS

        self.input, self.output = os.fspath(self.input), os.fspath(self.output)
        check_choice(self.placement, "placement", PLACEMENTS)
        check_choice(self.selection, "selection", SELECTIONS)
        self.shard_size = check_int(self.shard_size, "shard_size", minimum=1)
        self.batch_size = check_int(self.batch_size, "batch_size", minimum=1)
        self.num_candidates = check_int(self.num_candidates, "num_candidates", minimum=1)
        self.scale_range = tuple(float(v) for v in self.scale_range)
        AugmentOptions(**self.options)  # bad options fail here, before any work
        if self.region is not None:
            from ..regions import Region

            Region.parse(self.region)  # an unknown phrase fails here
            if self.placement != "learned":
                raise ValueError("region= constrains learned placement only")
        if self.placement == "learned" and not self.model:
            raise ValueError("placement='learned' needs a location model (model=)")

    def to_dict(self) -> dict:
        """The job as a plain dict."""
        return dataclasses.asdict(self)

    def fingerprint(self, dataset: DetectionDataset) -> str:
        """What a rerun must share with the run it resumes: the options and the list of images."""
        d = self.to_dict()
        d.pop("strict")
        d["options"] = dataclasses.asdict(AugmentOptions(**self.options))
        d["model"] = os.path.abspath(self.model) if self.model and os.path.exists(self.model) else self.model
        d["images_list"] = hashlib.sha256("\n".join(r.key for r in dataset.records).encode()).hexdigest()
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class AugmentReport:
    """What a run did: images written, objects pasted / not placed, occluded objects dropped or
    flagged, records skipped by reason (with their messages), shards done now and before."""

    output: str
    annotations: str
    images: int = 0
    pasted: int = 0
    no_place: int = 0
    dropped: int = 0
    flagged: int = 0
    skipped: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    shards: int = 0
    shards_resumed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The report as a plain dict (written to ``<output>/augment_report.json``)."""
        return dataclasses.asdict(self)


# -- building the pieces (in the driver or in a Ray actor) -------------------------------------------

def _load_model(spec: str, device: str):
    import torch

    from ..modeling import LocationModel

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = LocationModel.from_pretrained(os.path.expanduser(spec))
    except (OSError, ValueError) as e:
        raise ValueError(f"model {spec}: {e}") from e
    return model.to(device).eval()


def build_augmenter(job: AugmentJob, dataset: DetectionDataset, model=None, inpainter=None, scene_of=None) -> Augmenter:
    """The :class:`~locinsert.copypaste.core.Augmenter` of ``job`` (``model`` / ``inpainter``
    given as objects override the job's names; ``scene_of`` is the oracle's ``record -> Scene``)."""
    from .placement import LearnedPlacement, OraclePlacement, RandomPlacement
    from .sources import DatasetInstances, FolderInstances

    options = AugmentOptions(**job.options)
    if job.placement == "learned":
        placement = LearnedPlacement(model if model is not None else _load_model(job.model, job.device),
                                     job.num_candidates, job.selection, region=job.region)
    elif job.placement == "oracle":
        placement = OraclePlacement(scene_of)
    else:
        placement = RandomPlacement(job.scale_range)
    bank = None
    if inpainter is None and job.paste.startswith("inpainter:"):
        from ..inpainting import BACKENDS

        name = job.paste.split(":", 1)[1]
        if name not in BACKENDS:
            raise ValueError(f"paste: unknown inpainter {name!r}; choose from {sorted(BACKENDS)}")
        inpainter = BACKENDS[name]()
    if inpainter is None:
        bank = (DatasetInstances(dataset, options.classes) if job.paste == "dataset"
                else FolderInstances(job.paste, options.classes))
        if len(bank) == 0:
            raise ValueError(f"{dataset.source}: no instance to cut out (no annotation of the chosen classes)")
    return Augmenter(dataset, placement, bank, options, inpainter)


def _shards(job: AugmentJob, dataset: DetectionDataset) -> list[list[tuple]]:
    copies = AugmentOptions(**job.options).copies
    items = [(r, c) for r in dataset.records for c in range(copies)]
    return [items[i:i + job.shard_size] for i in range(0, len(items), job.shard_size)]


def _layout(job: AugmentJob, fmt: str) -> dict:
    out = job.output
    return {"images": os.path.join(out, "images"), "labels": os.path.join(out, "labels"),
            "annotations": os.path.join(out, "annotations.json" if fmt == "coco" else "data.yaml"),
            "state": os.path.join(out, STATE_DIR), "shards": os.path.join(out, STATE_DIR, "shards")}


def _marker(layout: dict, index: int) -> str:
    return os.path.join(layout["shards"], f"{index:06d}.json")


def process_shard(augmenter: Augmenter, items: list, index: int, layout: dict, batch_size: int) -> dict:
    """Augment one shard, write its images, then its marker (the shard's labels). Returns the marker."""
    from PIL import Image

    entries = []
    for start in range(0, len(items), batch_size):
        for res in augmenter.run(items[start:start + batch_size]):
            dst = os.path.join(layout["images"], res.key)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if res.image is None:
                write_file_atomic(dst, lambda tmp, src=res.source.path: shutil.copyfile(src, tmp))
            else:
                kw = {"quality": 95} if dst.lower().endswith((".jpg", ".jpeg")) else {}
                save_image_atomic(Image.fromarray(res.image), dst, **kw)
            entries.append({"key": res.key, "source": res.source.key, "copy": res.copy,
                            "annotations": [a.to_json() for a in res.annotations],
                            "pasted": res.pasted, "no_place": res.no_place, "dropped": res.dropped,
                            "flagged": res.flagged})
    marker = {"shard": index, "images": entries}
    write_json_atomic(_marker(layout, index), marker)
    return marker


# -- engines -------------------------------------------------------------------------------------------

class _ShardWorker:
    """A Ray Data actor: builds the job's augmenter once (the location model stays loaded), then
    runs the shards it is given."""

    def __init__(self, job: dict):
        self.job = AugmentJob(**job)
        self.dataset = read_dataset(self.job.input, self.job.format, self.job.images)
        self.augmenter = build_augmenter(self.job, self.dataset)
        self.shards = _shards(self.job, self.dataset)
        self.layout = _layout(self.job, self.dataset.format)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        done = []
        for index in batch["shard"]:
            process_shard(self.augmenter, self.shards[int(index)], int(index), self.layout, self.job.batch_size)
            done.append(int(index))
        return {"shard": np.asarray(done, dtype=np.int64)}


def _run_ray(job: AugmentJob, pending: list[int], address: str | None, workers: int, progress) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("engine='ray' needs Ray Data: pip install 'locinsert[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
        # the workers import locinsert from where this process found it
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PYTHONPATH": os.pathsep.join([pkg_root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        for k in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            if k in os.environ:
                env[k] = os.environ[k]
        ray.init(runtime_env={"env_vars": env}, **kwargs)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        use_gpu = job.device == "cuda" or (job.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        ds = ray.data.from_items([{"shard": i} for i in pending], override_num_blocks=max(1, len(pending)))
        ds = ds.map_batches(_ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_kwargs={"job": job.to_dict()},
                            num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1)
        for batch in ds.iter_batches(batch_size=1):
            progress.update(len(batch["shard"]))
    finally:
        if started:
            ray.shutdown()


# -- writing the dataset ----------------------------------------------------------------------------------

def _coco_output(dataset: DetectionDataset, markers: list[dict], copies: int) -> dict:
    recs = {r.key: r for r in dataset.records}
    cat_id = {}
    for c in dataset.categories:
        cat_id.setdefault(c["name"], c["id"])
    int_ids = [r.raw["id"] for r in dataset.records if isinstance(r.raw["id"], int)]
    next_img = max(int_ids, default=0) + 1
    ann_ids = [a.raw["id"] for r in dataset.records for a in r.annotations if isinstance(a.raw.get("id"), int)]
    next_ann = max(ann_ids, default=0) + 1
    order = {id(r.raw): i for i, r in enumerate(dataset.records)}
    entries = sorted((e for m in markers for e in m["images"]), key=lambda e: (e["source"], e["copy"]))
    images, annotations = [], []
    for e in entries:
        rec = recs[e["source"]]
        entry = dict(rec.raw)
        if e["copy"] > 0:
            entry["id"], next_img = next_img, next_img + 1
        entry["file_name"] = e["key"]
        images.append((order[id(rec.raw)], e["copy"], entry))
        for d in e["annotations"]:
            raw, changed = d.get("raw"), d.get("changed")
            if raw is not None and not changed and e["copy"] == 0:
                annotations.append(raw)
                continue
            a = dict(raw) if raw is not None else {"iscrowd": 0, "pasted": 1}
            if raw is None or e["copy"] > 0 or not isinstance(raw.get("id"), int):
                a["id"], next_ann = next_ann, next_ann + 1  # a covered original of copy 0 keeps its id
            a["image_id"], a["category_id"] = entry["id"], cat_id[d["category"]]
            a["bbox"] = [round(float(v), 2) for v in d["bbox"]]
            flags = d.get("flags") or {}
            a["area"] = round(float(flags.get("area", d["bbox"][2] * d["bbox"][3])), 2)
            if d.get("segmentation") is not None:
                a["segmentation"] = d["segmentation"]
            elif "segmentation" in a and changed:
                a["segmentation"] = []
            if flags.get("ignore"):
                a["ignore"], a["visible_share"] = 1, flags.get("visible_share")
            annotations.append(a)
    images.sort(key=lambda t: (t[0], t[1]))
    annotations.sort(key=lambda a: a["id"] if isinstance(a.get("id"), int) else -1)
    return {**dataset.meta, "images": [t[2] for t in images], "annotations": annotations,
            "categories": dataset.categories}


def _polygon(segmentation, width: int, height: int) -> list[float] | None:
    """The largest outer contour of a mask, normalised: YOLO's segmentation line."""
    from skimage.measure import approximate_polygon, find_contours

    from .formats import decode_segmentation

    import numpy as np

    mask = decode_segmentation(segmentation, height, width)
    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    if not contours:
        return None
    c = approximate_polygon(max(contours, key=len), tolerance=0.5)[:, ::-1] - 1  # (x, y), unpadded
    c = np.clip(c, 0, [width, height]) / [width, height]
    return c.reshape(-1).tolist() if len(c) >= 3 else None


def _write_yolo(dataset: DetectionDataset, markers: list[dict], layout: dict) -> None:
    import yaml

    recs = {r.key: r for r in dataset.records}
    index = {n: i for i, n in enumerate(dataset.names)}
    seg_style = any(isinstance(a.raw, str) and len(a.raw.split()) > 5 for r in dataset.records for a in r.annotations)
    for m in markers:
        for e in m["images"]:
            rec = recs[e["source"]]
            lines = []
            for d in e["annotations"]:
                if (d.get("flags") or {}).get("ignore"):
                    continue  # YOLO has no ignore flag: flagged objects are listed in the report
                if isinstance(d.get("raw"), str) and not d.get("changed"):
                    lines.append(d["raw"])
                    continue
                poly = _polygon(d["segmentation"], rec.width, rec.height) if seg_style and d.get("segmentation") else None
                if poly:
                    lines.append(f"{index[d['category']]} " + " ".join(f"{v:.6f}" for v in poly))
                else:
                    x, y, w, h = d["bbox"]
                    lines.append(f"{index[d['category']]} {(x + w / 2) / rec.width:.6f} {(y + h / 2) / rec.height:.6f} "
                                 f"{w / rec.width:.6f} {h / rec.height:.6f}")
            dst = os.path.join(layout["labels"], os.path.splitext(e["key"])[0] + ".txt")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            write_text_atomic(dst, "".join(line + "\n" for line in lines))
    write_text_atomic(layout["annotations"], yaml.safe_dump(
        {"path": ".", "train": "images", "val": "images", "names": dict(enumerate(dataset.names))}, sort_keys=False))


# -- the job ----------------------------------------------------------------------------------------------

def run_job(job: AugmentJob, *, engine: str = "local", address: str | None = None, workers: int = 2,
            model: Any = None, inpainter: Any = None, scene_of: Any = None, dataset: DetectionDataset | None = None,
            progress: bool = True) -> AugmentReport:
    """Run (or resume) ``job``; returns its :class:`AugmentReport`.

    Args:
        job: the :class:`AugmentJob`.
        engine: ``"local"`` (in this process) or ``"ray"`` (Ray Data actors).
        address: the Ray cluster to join (``None``: start a local one).
        workers: Ray actors (each loads the model once).
        model: a live ``LocationModel`` for the local engine (instead of ``job.model``).
        inpainter: a live inpainter for the local engine (instead of ``job.paste``).
        scene_of: the oracle's ``record -> Scene`` (see :func:`build_augmenter`).
        dataset: an already read dataset (default: read ``job.input``).
        progress: show a progress bar.

    Raises:
        ValueError: bad input, or an output folder that holds another job.
    """
    import time

    from tqdm.auto import tqdm

    from ..validation import check_choice, check_int

    t0 = time.time()
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise ValueError("augment needs pycocotools: pip install 'locinsert[augment]'") from None
    engine = check_choice(engine, "engine", ENGINES)
    workers = check_int(workers, "workers", minimum=1)
    if engine == "ray" and (model is not None or inpainter is not None or scene_of is not None):
        raise ValueError("engine='ray' rebuilds the job in every worker: give the model as a folder (job.model), "
                         "not as an object")
    if dataset is None:
        dataset = read_dataset(job.input, job.format, job.images, strict=job.strict)
    layout = _layout(job, dataset.format)
    if os.path.exists(job.output) and not os.path.isdir(job.output):
        raise ValueError(f"{job.output}: the output exists and is not a folder")
    if os.path.abspath(job.output) in (os.path.abspath(dataset.image_root), os.path.dirname(os.path.abspath(job.input))):
        raise ValueError(f"{job.output}: the output folder must not be the input's folder")
    fp = job.fingerprint(dataset)
    state_file = os.path.join(layout["state"], "job.json")
    if os.path.isfile(state_file):
        with open(state_file) as f:
            old = json.load(f)
        if old.get("fingerprint") != fp:
            raise ValueError(f"{job.output} holds an augmentation job with other options or other images; "
                             "choose another output folder or delete it")
    elif os.path.isdir(job.output) and os.listdir(job.output):
        raise ValueError(f"{job.output}: the output folder is not empty and holds no augmentation job")
    os.makedirs(layout["shards"], exist_ok=True)
    write_json_atomic(state_file, {"fingerprint": fp, "job": job.to_dict()})
    shards = _shards(job, dataset)
    pending = [i for i in range(len(shards)) if not os.path.isfile(_marker(layout, i))]
    bar = tqdm(total=len(shards), initial=len(shards) - len(pending), desc="augment shards", unit="shard",
               disable=not progress, file=sys.stderr)
    if pending:
        if engine == "local":
            augmenter = build_augmenter(job, dataset, model, inpainter, scene_of)
            for i in pending:
                process_shard(augmenter, shards[i], i, layout, job.batch_size)
                bar.update(1)
        else:
            _run_ray(job, pending, address, workers, bar)
    bar.close()
    markers = []
    for i in range(len(shards)):
        with open(_marker(layout, i)) as f:
            markers.append(json.load(f))
    copies = AugmentOptions(**job.options).copies
    if dataset.format == "coco":
        write_json_atomic(layout["annotations"], _coco_output(dataset, markers, copies))
    else:
        _write_yolo(dataset, markers, layout)
    totals = Counter()
    flagged = []
    for m in markers:
        for e in m["images"]:
            totals.update({k: e[k] for k in ("pasted", "no_place", "dropped", "flagged")})
            totals["images"] += 1
            flagged += [f"{e['key']}: {d['category']}" for d in e["annotations"] if (d.get("flags") or {}).get("ignore")]
    report = AugmentReport(job.output, layout["annotations"], totals["images"], totals["pasted"], totals["no_place"],
                           totals["dropped"], totals["flagged"], dict(dataset.skipped), dataset.problems[:100],
                           len(shards), len(shards) - len(pending), round(time.time() - t0, 2))
    write_json_atomic(os.path.join(job.output, "augment_report.json"),
                      {**report.to_dict(), "flagged_objects": flagged[:1000], "job": job.to_dict()})
    return report
