"""The three synthetic stages in one call (what the demo runs) and the learning table."""

import math

import pytest
import torch

from locinsert.modeling import LocationModel
from locinsert.evaluation import format_class_table, format_learning_table, shuffle_images
from locinsert.training.synthetic import (SYNTHETIC_BUDGETS, run_synthetic_stages, synthetic_stage_fields,
                                          synthetic_test_queries)


def test_budgets_chain_the_stages():
    for budget in SYNTHETIC_BUDGETS:
        fields = {s: synthetic_stage_fields(s, "out", budget) for s in ("pretrain", "finetune", "dpo")}
        assert "model_name_or_path" not in fields["pretrain"]
        assert fields["pretrain"]["image_encoder_checkpoint"].replace("\\", "/") == "out/encoder/final"
        assert fields["finetune"]["model_name_or_path"].replace("\\", "/") == "out/pretrain/final"
        assert fields["dpo"]["model_name_or_path"].replace("\\", "/") == "out/finetune/final"
        # DPO pairs come from the scenes the finetuned model was trained on; pretraining sees others
        assert fields["dpo"]["synthetic_seed"] == fields["finetune"]["synthetic_seed"] != \
            fields["pretrain"]["synthetic_seed"]
    with pytest.raises(ValueError, match="budget"):
        synthetic_stage_fields("pretrain", "out", "huge")


@pytest.mark.slow
def test_run_synthetic_stages_and_table(tmp_path):
    tiny = dict(preset="tiny", synthetic_scenes=6, max_steps=2, per_device_train_batch_size=4)
    report = run_synthetic_stages(str(tmp_path), budget="quick", progress=False, test_scenes=3,
                                  overrides={s: dict(tiny) for s in ("encoder", "pretrain", "finetune", "dpo")})
    assert list(report.results) == ["encoder", "pretrain", "finetune", "dpo"]
    assert all(r.global_step == 2 for r in report.results.values())
    # the location model starts from the encoder stage's tower, frozen
    pre = LocationModel.from_pretrained(report.results["pretrain"].model_path)
    assert pre.config.freeze_image_encoder
    assert report.results["dpo"].resumed_from is None
    methods = [row["method"] for row in report.table]
    assert methods[:2] == ["random", "class prior"] and len(methods) == 6
    assert methods[-1].endswith("images shuffled")  # the image ablation of the last stage
    classes = {q.category for q in synthetic_test_queries("quick", test_scenes=3)}
    for row in report.table:
        for key in ("oracle_precision@100", "coverage@100", "tpr@10", "fpr@10", "tpr@100", "fpr@100",
                    *(f"precision/{c}@100" for c in classes)):
            assert 0.0 <= row[key] <= 1.0 or math.isnan(row[key]), (row["method"], key)
    text = format_learning_table(report.table)
    assert "oracle precision (K=100)" in text and text.count("\n") == 7
    per_class = format_class_table(report.table)
    assert per_class.splitlines()[0] == "| method | all | " + " | ".join(sorted(classes)) + " |"


def test_shuffled_images_come_from_other_scenes_and_keep_the_labels():
    test = synthetic_test_queries("quick", test_scenes=5)
    shuffled = shuffle_images(test)
    assert len(shuffled) == len(test)
    for q, s in zip(test, shuffled):
        assert s.image_source is not q.image_source and s.meta["scene"] is q.meta["scene"]
        assert s.category == q.category and torch.equal(s.positives, q.positives)
        assert s.image.tobytes() != q.image.tobytes()
    with pytest.raises(ValueError, match="two scenes"):
        shuffle_images(test[:1])
