"""`locinsert augment`: formats round trip, bad input, labels of pasted and covered objects, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from locinsert.copypaste import AugmentOptions, augment, read_coco, read_dataset, read_yolo
from locinsert.copypaste.blending import blend
from locinsert.copypaste.core import _State
from locinsert.copypaste.formats import Annotation, ImageRecord, decode_segmentation, encode_mask
from locinsert.copypaste.sources import DatasetInstances, FolderInstances

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image(path, w=48, h=40, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def make_coco(folder, n=4):
    """A tiny COCO dataset: RLE (compressed and not), polygon and box-only annotations."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    images, anns = [], []
    for i in range(n):
        _image(os.path.join(folder, "images", f"im{i}.png"), seed=i)
        images.append({"id": 10 + i, "file_name": f"im{i}.png", "width": 48, "height": 40, "license": 1})
        m = np.zeros((40, 48), bool)
        m[5:20, 4 + i:18 + i] = True
        anns.append({"id": 100 + 3 * i, "image_id": 10 + i, "category_id": 7, "bbox": [4 + i, 5, 14, 15],
                     "area": 210, "iscrowd": 0, "segmentation": encode_mask(m)})
        anns.append({"id": 101 + 3 * i, "image_id": 10 + i, "category_id": 9, "bbox": [25, 22, 12, 10], "area": 120,
                     "iscrowd": 0, "segmentation": [[25, 22, 37, 22, 37, 32, 25, 32]]})
        if i % 2:
            anns.append({"id": 102 + 3 * i, "image_id": 10 + i, "category_id": 7, "bbox": [30, 2, 8, 8], "area": 64,
                         "iscrowd": 0})
    data = {"info": {"description": "fixture"}, "licenses": [{"id": 1, "name": "x"}], "images": images,
            "annotations": anns, "categories": [{"id": 7, "name": "cup"}, {"id": 9, "name": "plant"}]}
    path = os.path.join(folder, "annotations.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path, data


def make_yolo(folder, n=3):
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
    with open(os.path.join(folder, "data.yaml"), "w") as f:
        f.write("names:\n  0: cup\n  1: plant\n")
    texts = {}
    for i in range(n):
        _image(os.path.join(folder, "images", f"y{i}.png"), seed=10 + i)
        text = "0 0.25 0.3 0.2 0.25\n1 0.6 0.6 0.7 0.6 0.7 0.8 0.6 0.8\n"
        texts[f"y{i}.txt"] = text
        with open(os.path.join(folder, "labels", f"y{i}.txt"), "w") as f:
            f.write(text)
    return folder, texts


def test_coco_round_trip_with_zero_insertions_is_exact(tmp_path):
    src, data = make_coco(tmp_path / "src")
    report = augment(src, tmp_path / "out", per_image=0, progress=False)
    assert report.images == 4 and report.pasted == 0
    with open(report.annotations) as f:
        out = json.load(f)
    assert out["images"] == data["images"]
    assert out["annotations"] == sorted(data["annotations"], key=lambda a: a["id"])
    assert out["categories"] == data["categories"] and out["info"] == data["info"]
    for im in data["images"]:
        a = (tmp_path / "src" / "images" / im["file_name"]).read_bytes()
        assert (tmp_path / "out" / "images" / im["file_name"]).read_bytes() == a


def test_yolo_round_trip_with_zero_insertions_is_exact(tmp_path):
    src, texts = make_yolo(str(tmp_path / "y"))
    report = augment(src, tmp_path / "out", per_image=0, progress=False)
    assert report.images == 3
    for name, text in texts.items():
        assert (tmp_path / "out" / "labels" / name).read_text() == text
    ds = read_yolo(tmp_path / "out")
    assert ds.names == ["cup", "plant"] and len(ds) == 3


def test_pasted_objects_are_labelled_with_masks(tmp_path):
    src, data = make_coco(tmp_path / "src")
    report = augment(src, tmp_path / "out", per_image=2, copies=2, seed=3, progress=False, blend="hard")
    assert report.images == 8 and report.pasted + report.no_place == 16 and report.pasted > 0
    with open(report.annotations) as f:
        out = json.load(f)
    pasted = [a for a in out["annotations"] if a.get("pasted")]
    # a later paste may cover an earlier one: it is then dropped like any covered object
    assert report.pasted - report.dropped <= len(pasted) <= report.pasted
    ids = [a["id"] for a in out["annotations"]]
    assert len(ids) == len(set(ids)) and len({im["id"] for im in out["images"]}) == 8
    for a in pasted:
        im = next(i for i in out["images"] if i["id"] == a["image_id"])
        if "segmentation" in a:  # pasted from an instance with a mask: the mask and box agree
            m = decode_segmentation(a["segmentation"], im["height"], im["width"])
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert a["area"] == m.sum()


def test_same_seed_same_output_other_seed_differs(tmp_path):
    src, _ = make_coco(tmp_path / "src")
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        augment(src, tmp_path / name, per_image=2, seed=seed, progress=False)
        outs.append((tmp_path / name / "annotations.json").read_text())
    assert outs[0] == outs[1] and outs[0] != outs[2]


def _record_with(mask_box, seg=True):
    m = np.zeros((40, 48), bool)
    x1, y1, x2, y2 = mask_box
    m[y1:y2, x1:x2] = True
    a = Annotation("cup", (x1, y1, x2 - x1, y2 - y1), encode_mask(m) if seg else None, {"id": 1})
    return ImageRecord("r.png", "r.png", 48, 40, [a])


def test_occlusion_shrinks_drops_or_flags():
    pasted = np.zeros((40, 48), bool)
    pasted[0:40, 0:10] = True  # covers the left 6 of 16 columns
    s = _State(_record_with((4, 5, 20, 20)), 0, None, [], list(_record_with((4, 5, 20, 20)).annotations))
    s.image = np.zeros((40, 48, 3), np.uint8)
    s.occlude(pasted, AugmentOptions())
    a = s.annotations[0]
    assert a.changed and a.bbox == (10.0, 5.0, 10.0, 15.0)
    assert decode_segmentation(a.segmentation, 40, 48).sum() == 150
    # nearly all covered: dropped, or kept with an ignore flag
    big = np.zeros((40, 48), bool)
    big[0:40, 0:18] = True
    for mode, left in (("drop", 0), ("flag", 1)):
        rec = _record_with((4, 5, 20, 20), seg=False)
        s = _State(rec, 0, None, [], list(rec.annotations))
        s.image = np.zeros((40, 48, 3), np.uint8)
        s.occlude(big, AugmentOptions(occluded=mode, min_visible=0.3))
        assert len(s.annotations) == left
        if left:
            assert s.annotations[0].flags["ignore"] == 1 and s.annotations[0].flags["visible_share"] < 0.3


def test_blending_modes():
    rng = np.random.default_rng(0)
    image = np.full((30, 30, 3), (40, 120, 200), np.uint8)
    cut = np.zeros((10, 10, 4), np.uint8)
    cut[..., :3] = (250, 30, 30)
    cut[2:8, 2:8, 3] = 255
    hard, mask = blend(image, cut, (5, 5, 15, 15), "hard")
    assert mask.sum() == 36 and (hard[mask] == (250, 30, 30)).all() and (hard[~mask] == image[~mask]).all()
    soft, mask2 = blend(image, cut, (5, 5, 15, 15), "feather", sigma=1.0)
    assert (mask2 == mask).all() and not (soft == hard).all()
    assert (soft[0:4] == image[0:4]).all()  # nothing outside the box moves
    harm, _ = blend(image, cut, (5, 5, 15, 15), "harmonize", strength=1.0)
    dist = lambda x: np.abs(x[mask].astype(float).mean(0) - image[0, 0]).sum()  # noqa: E731
    assert dist(harm) < dist(hard)
    del rng


def test_instances_match_by_aspect_and_scale(tmp_path):
    src, _ = make_coco(tmp_path / "src")
    bank = DatasetInstances(read_coco(src))
    rng = np.random.default_rng(0)
    assert bank.classes == ["cup", "plant"] and len(bank) == 10
    inst = bank.match("plant", (0, 0, 24, 20), (48, 40), rng, top=1)
    assert inst.category == "plant" and inst.has_mask
    cut = bank.cutout(inst)
    assert cut.shape == (10, 12, 4) and cut[..., 3].min() == 255  # the polygon fills its box
    with pytest.raises(ValueError, match="no instance of class 'dog'"):
        bank.match("dog", (0, 0, 5, 5), (48, 40), rng)


def test_folder_cutouts_and_rare_boost(tmp_path):
    src, _ = make_coco(tmp_path / "src")
    os.makedirs(tmp_path / "cuts" / "plant")
    rgba = np.zeros((12, 8, 4), np.uint8)
    rgba[2:10, 1:7] = (0, 200, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cuts" / "plant" / "p.png")
    assert FolderInstances(tmp_path / "cuts").classes == ["plant"]
    report = augment(src, tmp_path / "out", paste=str(tmp_path / "cuts"), per_image=1, progress=False)
    with open(report.annotations) as f:
        pasted = [a for a in json.load(f)["annotations"] if a.get("pasted")]
    assert pasted and all(a["category_id"] == 9 and "segmentation" in a for a in pasted)
    # rare boost 1: uniform over classes (cup has 6 objects, plant 4)
    from locinsert.copypaste.core import Augmenter
    from locinsert.copypaste.placement import RandomPlacement

    ds = read_coco(src)
    bank = DatasetInstances(ds)
    natural = Augmenter(ds, RandomPlacement(), bank, AugmentOptions()).class_weights
    uniform = Augmenter(ds, RandomPlacement(), bank, AugmentOptions(rare_boost=1)).class_weights
    assert np.allclose(natural, [0.6, 0.4]) and np.allclose(uniform, [0.5, 0.5])


def test_bad_records_are_skipped_counted_and_named(tmp_path):
    src, data = make_coco(tmp_path / "src")
    data["images"].append({"id": 99, "file_name": "gone.png", "width": 48, "height": 40})
    data["annotations"].append({"id": 900, "image_id": 11, "category_id": 5, "bbox": [1, 1, 2, 2]})
    bad = np.zeros((20, 20), bool)
    bad[2:5, 2:5] = True
    data["annotations"].append({"id": 901, "image_id": 12, "category_id": 7, "bbox": [2, 2, 3, 3],
                                "segmentation": encode_mask(bad)})
    path = tmp_path / "src" / "bad.json"
    path.write_text(json.dumps(data))
    ds = read_coco(path)
    assert [r.raw["id"] for r in ds.records] == [10, 13]
    assert ds.skipped == {"missing image": 1, "unknown class": 1, "bad mask": 1}
    text = "\n".join(ds.problems)
    assert "gone.png" in text and "annotation 900: unknown class" in text and "annotation 901" in text
    assert "mask is 20x20 but the image is 48x40" in text and str(path) in text
    with pytest.raises(ValueError, match="annotation 900: unknown class"):
        read_coco(path, strict=True)
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json: malformed annotation file"):
        read_coco(tmp_path / "broken.json")
    (tmp_path / "empty.json").write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(ValueError, match="empty.json: empty dataset"):
        read_dataset(tmp_path / "empty.json")


def test_bad_yolo_lines_skip_their_image(tmp_path):
    src, _ = make_yolo(str(tmp_path / "y"))
    (tmp_path / "y" / "labels" / "y1.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    (tmp_path / "y" / "labels" / "y2.txt").write_text("0 0.5 zero 0.1 0.1\n")
    (tmp_path / "y" / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = read_yolo(tmp_path / "y")
    assert [r.key for r in ds.records] == ["y0.png"]
    assert ds.skipped == {"unknown class": 1, "malformed": 1, "missing image": 1}
    assert any("y1.txt: line 1: unknown class 5" in p for p in ds.problems)


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "locinsert.cli.main", "augment", str(tmp_path / "nope.json"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "nope.json" in r.stderr
    src, _ = make_coco(tmp_path / "src")
    r = subprocess.run([sys.executable, "-m", "locinsert.cli.main", "augment", src, "--out", str(tmp_path / "o"),
                        "--per-image", "x"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--per-image" in r.stderr


_SLOW_RUN = """
import sys, time
import locinsert.copypaste.job as job
original = job.process_shard
def slow(*a, **k):
    out = original(*a, **k)
    time.sleep(0.3)
    return out
job.process_shard = slow
from locinsert.copypaste import augment
augment(sys.argv[1], sys.argv[2], per_image=2, copies=2, shard_size=1, seed=5, progress=False)
"""


@pytest.mark.slow
def test_sigkill_then_rerun_completes_without_duplicates(tmp_path):
    src, _ = make_coco(tmp_path / "src", n=6)
    augment(src, tmp_path / "ref", per_image=2, copies=2, shard_size=1, seed=5, progress=False)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, src, str(out)], env=env)
    shards = out / ".augment" / "shards"
    done = lambda: len([f for f in os.listdir(shards) if not f.startswith(".")]) if shards.is_dir() else 0  # noqa: E731
    deadline = time.time() + 120
    while time.time() < deadline and done() < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = done()
    assert 3 <= done < 12 and not (out / "annotations.json").exists()
    report = augment(src, out, per_image=2, copies=2, shard_size=1, seed=5, progress=False)
    assert report.shards_resumed == done and report.images == 12
    assert (out / "annotations.json").read_text() == (tmp_path / "ref" / "annotations.json").read_text()
    names = sorted(os.listdir(out / "images"))
    assert names == sorted(os.listdir(tmp_path / "ref" / "images")) and len(names) == 12
    for n in names:
        assert (out / "images" / n).read_bytes() == (tmp_path / "ref" / "images" / n).read_bytes()


def test_rerun_with_other_options_is_refused(tmp_path):
    src, _ = make_coco(tmp_path / "src")
    augment(src, tmp_path / "o", per_image=1, progress=False)
    again = augment(src, tmp_path / "o", per_image=1, progress=False)
    assert again.shards_resumed == again.shards == 1
    with pytest.raises(ValueError, match="other options"):
        augment(src, tmp_path / "o", per_image=2, progress=False)


def test_covered_originals_keep_their_ids(tmp_path):
    src, data = make_coco(tmp_path / "src")
    report = augment(src, tmp_path / "out", per_image=3, seed=1, progress=False, blend="hard")
    with open(report.annotations) as f:
        out = json.load(f)
    originals = {a["id"]: a for a in data["annotations"]}
    kept = [a for a in out["annotations"] if not a.get("pasted")]
    assert {a["id"] for a in kept} <= set(originals)
    changed = [a for a in kept if a != originals[a["id"]]]
    assert changed and all(a["category_id"] == originals[a["id"]]["category_id"] for a in changed)
    assert len(data["annotations"]) - len(kept) <= report.dropped


def test_an_inpainter_draws_the_objects(tmp_path):
    from locinsert.data.synthetic import sprite
    from locinsert.inpainting import CutoutCompositor

    src, _ = make_coco(tmp_path / "src")
    painter = CutoutCompositor(lambda prompt, size: sprite("cup" if prompt == "cup" else "plant", size), fit="stretch")
    report = augment(src, tmp_path / "out", inpainter=painter, per_image=1, seed=0, progress=False,
                     avoid_existing=False)
    assert report.pasted == 4
    with open(report.annotations) as f:
        out = json.load(f)
    pasted = [a for a in out["annotations"] if a.get("pasted")]
    assert len(pasted) >= 1 and all("segmentation" not in a for a in pasted)  # an inpainter's object: its box
    for im in out["images"]:
        before = np.asarray(Image.open(tmp_path / "src" / "images" / im["file_name"]))
        after = np.asarray(Image.open(tmp_path / "out" / "images" / im["file_name"]))
        assert (before != after).any()


def test_yolo_insertions_add_lines_in_the_input_style(tmp_path):
    src, texts = make_yolo(str(tmp_path / "y"))
    # plants have polygon masks: their pasted copies are polygon lines, as the input's are
    report = augment(src, tmp_path / "out", per_image=1, seed=2, progress=False, blend="hard", classes=["plant"])
    assert report.pasted == 3
    ds = read_yolo(tmp_path / "out")
    total = sum(len(r.annotations) for r in ds.records)
    assert total == 6 + report.pasted - report.dropped
    old = {t for text in texts.values() for t in text.splitlines()}
    new = [a.raw for r in ds.records for a in r.annotations if a.raw not in old]
    plants = [ln for ln in new if ln.startswith("1 ")]  # (a covered cup is rewritten as a box line)
    assert plants and all(len(ln.split()) >= 7 for ln in plants)
