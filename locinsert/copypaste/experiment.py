"""Does learned placement make better augmentations? Four arms on the synthetic world.

The world (:mod:`locinsert.copypaste.synthetic`) is built so that context decides: every image
holds labelled objects at true placements *and* unlabelled look-alikes at implausible places,
with varied appearance. A detector trained on a few labelled images (``n_train``) must learn
*where* a cup counts as a cup. Four arms train the same detector, with the same steps and seeds:

- ``none``: the labelled images only;
- ``random``: plus copy-paste augmentations at random places (Simple Copy-Paste);
- ``learned``: plus augmentations placed by the location model;
- ``oracle``: plus augmentations at true placements (the ceiling).

Every augmentation arm pastes the same instances (cut out of the labelled images by their masks)
with the same blending; only the placement differs. The detector is a small CenterNet (Zhou et
al., "Objects as Points", 2019) trained from scratch; AP is pycocotools' COCOeval on a large test
set of the same world (mAP@[.5:.95], AP50, AP75), mean ± sd over seeds. The detector and the
scoring live in :mod:`locinsert.copypaste.detector`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
from PIL import Image

from ..data.synthetic import CLASSES
from ..io import save_figure
from .detector import DetectionSample, coco_ap, detect, train_detector

__all__ = ["run_experiment", "format_table", "why_implausible", "placement_report", "ARMS"]

ARMS = ("none", "random", "learned", "oracle")


def _samples_of(annotations: str) -> list[DetectionSample]:
    from .formats import read_coco

    ds = read_coco(annotations)
    out = []
    for r in ds.records:
        with Image.open(r.path) as im:
            img = np.asarray(im.convert("RGB"))
        anns = [a for a in r.annotations if not (isinstance(a.raw, dict) and a.raw.get("ignore"))]
        out.append(DetectionSample(img, [list(a.xyxy) for a in anns], [CLASSES.index(a.category) for a in anns]))
    return out


def run_experiment(model: str, seeds: int = 5, n_train: int = 40, copies: int = 4, per_image=(1, 2),
                   n_test: int = 400, steps: int = 500, arms=ARMS, workdir: str | None = None,
                   selection: str = "sample", figure: str | None = None, log=print) -> dict:
    """Run the four-arm table (see the module docstring); returns per-arm, per-seed AP and the summary.

    Args:
        model: the location model folder for the learned arm.
        seeds: seeds (each: its own labelled images, augmentations and detector initialisation).
        n_train: labelled images per seed.
        copies: augmented versions of each labelled image.
        per_image: objects pasted per augmented image.
        n_test: test images (shared by every arm and seed).
        steps: detector training steps (the same for every arm).
        arms: which of :data:`ARMS` to run.
        workdir: where the datasets go (default: a temporary folder, removed afterwards).
        selection: the learned arm's box choice: ``"sample"`` (a plain draw) or ``"best"`` of 16.
        figure: save a picture of one augmented image per arm there.
    """
    from . import augment
    from .synthetic import coco_dict, export_coco, make_world

    t0 = time.time()
    tmp = workdir or tempfile.mkdtemp(prefix="locinsert-augment-exp-")
    test = make_world(n_test, seed=10_000, stream="augment-test")
    gt = coco_dict(test)
    test_images = np.stack([w.image for w in test])
    results: dict = {arm: [] for arm in arms}
    placed: dict = {arm: [0, 0] for arm in arms}
    examples: dict = {}
    try:
        for seed in range(seeds):
            src = os.path.join(tmp, f"seed{seed}", "labelled")
            ann = export_coco(make_world(n_train, seed=seed, stream="augment-train"), src)
            base = _samples_of(ann)
            for arm in arms:
                t = time.time()
                samples = list(base)
                if arm != "none":
                    out = os.path.join(tmp, f"seed{seed}", arm)
                    augment(ann, out, placement=arm, model=model if arm == "learned" else None, selection=selection,
                            per_image=per_image, copies=copies, seed=seed, progress=False, shard_size=64, batch_size=16)
                    aug = _samples_of(os.path.join(out, "annotations.json"))
                    samples += aug
                    p, ok = _plausible_share(os.path.join(out, "annotations.json"))
                    placed[arm][0] += p
                    placed[arm][1] += ok
                    if seed == 0:
                        examples[arm] = os.path.join(out, "annotations.json")
                elif seed == 0:
                    examples[arm] = ann
                det = train_detector(samples, steps, seed)
                ap = coco_ap(gt, detect(det, test_images))
                results[arm].append(ap)
                if seed == 0 and figure and arm == arms[-1]:
                    _figure(examples, figure, copies=copies)
                log(f"seed {seed} {arm:8s} mAP {ap['mAP']:.3f} AP50 {ap['AP50']:.3f} AP75 {ap['AP75']:.3f} "
                    f"({time.time() - t:.0f} s)")
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for arm, rows in results.items():
        summary[arm] = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1)
                                                                          if len(rows) > 1 else 0.0))
                        for k in ("mAP", "AP50", "AP75")}
        if arm != "none" and placed[arm][0]:
            summary[arm]["plausible"] = placed[arm][1] / placed[arm][0]
    return {"results": results, "summary": summary, "seconds": round(time.time() - t0, 1),
            "config": {"seeds": seeds, "n_train": n_train, "copies": copies, "per_image": list(per_image),
                       "n_test": n_test, "steps": steps, "selection": selection, "model": os.path.basename(
                           os.path.normpath(model)) if model else None}}


def _plausible_share(augmented: str) -> tuple[int, int]:
    """(pasted objects, of which at true placements) of an augmented COCO file, per the oracle."""
    import json

    from .synthetic import SCENE_KEY, scene_from_dict
    from ..data.synthetic import is_plausible

    with open(augmented) as f:
        data = json.load(f)
    images = {im["id"]: im for im in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    n = ok = 0
    for a in data["annotations"]:
        if not a.get("pasted"):
            continue
        scene = scene_from_dict(images[a["image_id"]][SCENE_KEY])
        x, y, w, h = a["bbox"]
        n += 1
        ok += bool(is_plausible(scene, names[a["category_id"]], [[x, y, x + w, y + h]])[0])
    return n, ok


def _figure(examples: dict, path: str, count: int = 3, copies: int = 1) -> None:
    """One row per arm: ``count`` images of its COCO file (``examples[arm]``), labelled boxes in
    green, pasted objects in yellow; distractors are the unboxed look-alikes."""
    import json

    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    arms = list(examples)
    fig, axes = plt.subplots(len(arms), count, figsize=(2.2 * count, 2.3 * len(arms)), squeeze=False)
    for i, arm in enumerate(arms):
        with open(examples[arm]) as f:
            data = json.load(f)
        root = os.path.join(os.path.dirname(examples[arm]), "images")
        step = 1 if arm == "none" else copies
        for j, im in enumerate(data["images"][::step][:count]):
            ax = axes[i, j]
            ax.axis("off")
            with Image.open(os.path.join(root, im["file_name"])) as pic:
                ax.imshow(np.asarray(pic.convert("RGB")), interpolation="nearest")
            for a in data["annotations"]:
                if a["image_id"] == im["id"]:
                    x, y, w, h = a["bbox"]
                    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, linewidth=1.1,
                                           edgecolor="yellow" if a.get("pasted") else "lime"))
            if j == 0:
                ax.set_title(arm, fontsize=10, loc="left")
    fig.suptitle("green: labelled, yellow: pasted (labelled); unboxed look-alikes are distractors", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def format_table(result: dict) -> str:
    """The four-arm table as Markdown (mean ± sd over seeds)."""
    labels = {"none": "none (labelled images only)", "random": "random copy-paste", "learned": "learned placement",
              "oracle": "oracle placement"}
    lines = ["| arm | mAP@[.5:.95] | AP50 | AP75 | pasted at true places |", "|---|---|---|---|---|"]
    for arm, s in result["summary"].items():
        cells = [f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in ("mAP", "AP50", "AP75")]
        share = f"{s['plausible']:.0%}" if "plausible" in s else "-"
        lines.append(f"| {labels.get(arm, arm)} | " + " | ".join(cells) + f" | {share} |")
    return "\n".join(lines)


def why_implausible(scene, cls: str, box) -> str | None:
    """The first rule of the synthetic oracle that ``box`` breaks for ``cls`` (None if plausible):
    ``"outside"``, ``"aspect"``, ``"overlap"`` (covers a thing the class must avoid) or ``"support"``
    (wrong place or size for what it stands on: floor, table top, wall, window)."""
    from ..data.synthetic.oracle import OVERLAP_TOL, RULES, _overlap_share, _support, plausible_np

    b = np.asarray(box, np.float64).reshape(1, 4)
    if plausible_np(scene, cls, b)[0]:
        return None
    rule = RULES[cls]
    w, h = b[0, 2] - b[0, 0], b[0, 3] - b[0, 1]
    if b[0, 0] < 0 or b[0, 1] < 0 or b[0, 2] > scene.size or b[0, 3] > scene.size:
        return "outside"
    if not rule.aspect[0] <= w / max(h, 1e-9) <= rule.aspect[1]:
        return "aspect"
    avoid = np.concatenate([getattr(scene, a) for a in rule.avoid], 0)
    if _overlap_share(b, avoid)[0] > OVERLAP_TOL:
        return "overlap"
    return "support" if not _support(scene, rule, b)[0] else "size"


def placement_report(model: str, n: int = 40, seed: int = 0, copies: int = 2, selection: str = "sample",
                     figure: str | None = None) -> dict:
    """Where learned placement goes wrong: per class, the share of pasted objects at true places and
    the broken rule of the others (:func:`why_implausible`); optionally a picture of failures."""
    import json
    from collections import Counter

    from . import augment
    from .synthetic import SCENE_KEY, export_coco, make_world, scene_from_dict

    tmp = tempfile.mkdtemp(prefix="locinsert-augment-report-")
    try:
        ann = export_coco(make_world(n, seed=seed, stream="augment-train"), os.path.join(tmp, "src"))
        out = os.path.join(tmp, "learned")
        augment(ann, out, placement="learned", model=model, selection=selection, per_image=(1, 2), copies=copies,
                seed=seed, progress=False, batch_size=16)
        with open(os.path.join(out, "annotations.json")) as f:
            data = json.load(f)
        images = {im["id"]: im for im in data["images"]}
        names = {c["id"]: c["name"] for c in data["categories"]}
        per_class: dict = {}
        failures = []
        for a in data["annotations"]:
            if not a.get("pasted"):
                continue
            im = images[a["image_id"]]
            x, y, w, h = a["bbox"]
            cls = names[a["category_id"]]
            why = why_implausible(scene_from_dict(im[SCENE_KEY]), cls, [x, y, x + w, y + h])
            c = per_class.setdefault(cls, Counter())
            c["pasted"] += 1
            c[why or "plausible"] += 1
            if why:
                failures.append((im["file_name"], cls, (x, y, x + w, y + h), why))
        if figure and failures:
            _failure_figure(out, failures, figure)
        return {cls: dict(c) for cls, c in sorted(per_class.items())}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _failure_figure(out: str, failures: list, path: str, count: int = 8) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    # one of each (class, reason) first, so the picture shows the kinds of mistakes
    seen, picked = set(), []
    for f in failures:
        if (f[1], f[3]) not in seen:
            seen.add((f[1], f[3]))
            picked.append(f)
    picked += [f for f in failures if f not in picked][: max(0, count - len(picked))]
    picked = picked[:count]
    cols = min(4, len(picked))
    rows = (len(picked) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, cls, box, why) in zip(axes.flat, picked):
        with Image.open(os.path.join(out, "images", name)) as im:
            ax.imshow(np.asarray(im.convert("RGB")), interpolation="nearest")
        ax.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                               edgecolor="red", linewidth=1.2))
        ax.set_title(f"{cls}: {why}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
