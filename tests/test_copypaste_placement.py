"""`locinsert augment` placements: learned (a saved LocationModel), oracle (synthetic world), and Ray."""

import json
import os

import numpy as np
import pytest
import torch

from locinsert.copypaste import augment
from locinsert.copypaste.synthetic import export_coco, make_world, scene_from_dict, scene_to_dict
from locinsert.data.synthetic import is_plausible


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    return export_coco(make_world(6, seed=1), folder / "src")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from locinsert import LocationModel, LocationModelConfig

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    LocationModel(LocationModelConfig.preset("tiny")).save_pretrained(folder)
    return str(folder)


def _pasted(out):
    with open(os.path.join(out, "annotations.json")) as f:
        data = json.load(f)
    images = {im["id"]: im for im in data["images"]}
    return data, images, [a for a in data["annotations"] if a.get("pasted")]


def _overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_world_has_labelled_objects_and_unlabelled_lookalikes():
    w = make_world(20, seed=0)
    assert sum(len(x.objects) for x in w) >= 20 and sum(len(x.distractors) for x in w) >= 15
    for x in w:
        for cls, box, _ in x.objects:
            assert is_plausible(x.scene, cls, [box])[0]
        for cls, box in x.distractors:
            assert not is_plausible(x.scene, cls, [box])[0]
    s = w[0].scene
    assert (scene_from_dict(json.loads(json.dumps(scene_to_dict(s)))).render() == s.render()).all()


def test_learned_placement_avoids_existing_boxes(world, tiny_model, tmp_path):
    report = augment(world, tmp_path / "out", placement="learned", model=tiny_model, per_image=2, seed=0,
                     progress=False, batch_size=4)
    assert report.pasted + report.no_place == 12 and report.pasted >= 6 and report.dropped == 0
    data, images, pasted = _pasted(tmp_path / "out")
    originals = [a for a in data["annotations"] if not a.get("pasted")]
    for p in pasted:
        pb = [p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3]]
        for o in originals + [q for q in pasted if q is not p]:
            if o["image_id"] == p["image_id"]:
                ob = [o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2], o["bbox"][1] + o["bbox"][3]]
                assert _overlap(pb, ob) == 0


def test_learned_placement_keeps_to_a_region(world, tiny_model, tmp_path):
    report = augment(world, tmp_path / "out", placement="learned", model=tiny_model, per_image=1, seed=0,
                     region="bottom", progress=False)
    assert report.pasted >= 4
    _, images, pasted = _pasted(tmp_path / "out")
    for a in pasted:  # centre mode: the placed box's centre is in the bottom half (the mask's, within a pixel)
        assert a["bbox"][1] + a["bbox"][3] / 2 >= images[a["image_id"]]["height"] / 2 - 1
    with pytest.raises(ValueError, match="unknown position"):
        augment(world, tmp_path / "bad", placement="learned", model=tiny_model, region="sideways", progress=False)


def test_a_model_object_gives_what_its_folder_gives(world, tiny_model, tmp_path):
    from locinsert import LocationModel

    kw = dict(placement="learned", per_image=(1, 2), seed=7, progress=False, batch_size=3)
    augment(world, tmp_path / "path", model=tiny_model, **kw)
    augment(world, tmp_path / "object", model=LocationModel.from_pretrained(tiny_model).eval(), **kw)
    assert (tmp_path / "path" / "annotations.json").read_text() == (tmp_path / "object" / "annotations.json").read_text()
    with pytest.raises(ValueError, match="give the model as a folder"):
        augment(world, tmp_path / "ray", model=LocationModel.from_pretrained(tiny_model), engine="ray", **kw)


def test_oracle_placement_pastes_at_true_places(world, tmp_path):
    report = augment(world, tmp_path / "out", placement="oracle", per_image=(1, 2), seed=0, progress=False,
                     blend="hard")
    assert report.pasted > 0
    data, images, pasted = _pasted(tmp_path / "out")
    names = {c["id"]: c["name"] for c in data["categories"]}
    ok = [bool(is_plausible(scene_from_dict(images[a["image_id"]]["synthetic_scene"]), names[a["category_id"]],
                            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]])[0])
          for a in pasted]
    assert np.mean(ok) >= 0.8  # a mask's box can be a pixel tighter than the placed box


def test_oracle_needs_a_synthetic_scene(tmp_path):
    from test_copypaste import make_coco

    src, _ = make_coco(tmp_path / "src")
    with pytest.raises(ValueError, match="oracle placement needs the synthetic scene"):
        augment(src, tmp_path / "o", placement="oracle", progress=False)


@pytest.mark.slow
def test_ray_two_workers_write_the_same_dataset(world, tiny_model, tmp_path):
    kw = dict(placement="learned", model=tiny_model, per_image=(1, 2), copies=2, shard_size=3, batch_size=2,
              seed=4, progress=False)
    local = augment(world, tmp_path / "local", **kw)
    remote = augment(world, tmp_path / "ray", engine="ray", workers=2, **kw)
    assert remote.images == local.images == 12 and remote.shards == 4
    assert (tmp_path / "ray" / "annotations.json").read_text() == (tmp_path / "local" / "annotations.json").read_text()
    names = sorted(os.listdir(tmp_path / "local" / "images"))
    assert names == sorted(os.listdir(tmp_path / "ray" / "images"))
    for n in names:
        assert (tmp_path / "ray" / "images" / n).read_bytes() == (tmp_path / "local" / "images" / n).read_bytes()


def test_bench_augment_rejects_bad_options():
    from locinsert.bench.augment import main

    with pytest.raises(SystemExit) as e:  # argparse: one line, exit code 2
        main(["--workers", "0"])
    assert e.value.code == 2


@pytest.mark.slow
def test_bench_augment_measures_both_engines():
    from locinsert.bench.augment import bench, format_results

    r = bench(num_images=6, per_image=1, workers=2, placement="random", shard_size=2)
    assert r["same_output"] is True and r["local_images_per_s"] > 0 and r["ray_images_per_s"] > 0
    assert "Ray, 2 local workers" in format_results(r)
