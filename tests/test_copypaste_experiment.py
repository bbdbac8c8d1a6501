"""The augmentation experiment's parts: the detector, COCO AP, and the oracle's reasons."""

import numpy as np

from locinsert.copypaste.detector import DetectionSample, coco_ap, detect, train_detector
from locinsert.copypaste.experiment import format_table, why_implausible
from locinsert.copypaste.synthetic import coco_dict, make_world
from locinsert.data.synthetic import CLASSES


def test_coco_ap_is_one_for_the_truth_and_low_for_noise():
    world = make_world(8, seed=3)
    gt = coco_dict(world)
    truth = [[((a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]),
               a["category_id"] - 1, 1.0) for a in gt["annotations"] if a["image_id"] == im["id"]]
             for im in gt["images"]]
    assert coco_ap(gt, truth) == {"mAP": 1.0, "AP50": 1.0, "AP75": 1.0}
    shifted = [[((b[0] + 9, b[1] + 9, b[2] + 9, b[3] + 9), c, s) for b, c, s in dets] for dets in truth]
    assert coco_ap(gt, shifted)["AP50"] < 0.5
    assert coco_ap(gt, [[] for _ in world]) == {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}


def test_detector_trains_and_detects():
    world = make_world(6, seed=4)
    samples = [DetectionSample(w.image, [list(b) for _, b, _ in w.objects], [CLASSES.index(c) for c, _, _ in w.objects])
               for w in world]
    model = train_detector(samples, steps=3, seed=0, batch_size=4)
    dets = detect(model, np.stack([w.image for w in world]), top=5)
    assert len(dets) == 6 and all(len(d) == 5 for d in dets)
    box, cls, score = dets[0][0]
    assert len(box) == 4 and 0 <= cls < len(CLASSES) and 0 <= score <= 1


def test_why_implausible_names_the_broken_rule():
    world = make_world(10, seed=5)
    w = next(x for x in world if x.objects)
    cls, box, _ = w.objects[0]
    assert why_implausible(w.scene, cls, box) is None
    x1, y1, x2, y2 = box
    assert why_implausible(w.scene, cls, (x1, y1, x1 + 4 * (x2 - x1), y2)) in ("aspect", "outside")
    assert why_implausible(w.scene, cls, (-5, y1, x2, y2)) == "outside"


def test_format_table_rows():
    result = {"summary": {"none": {k: (0.1, 0.01) for k in ("mAP", "AP50", "AP75")},
                          "oracle": {**{k: (0.5, 0.02) for k in ("mAP", "AP50", "AP75")}, "plausible": 1.0}}}
    table = format_table(result)
    assert "| none (labelled images only) | 0.100 ± 0.010" in table and "| 100% |" in table
