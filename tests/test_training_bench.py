"""`locinsert bench training`: samples/s with and without the encoder-feature cache (figures, never timed asserts)."""

import pytest

from locinsert.bench.training import format_results, run_training_bench


@pytest.mark.slow
def test_training_bench_reports_both_runs():
    r = run_training_bench("tiny", batch_size=4, steps=2, warmup=1, scenes=8)
    assert r["samples_per_s_without_cache"] > 0 and r["samples_per_s_with_cache"] > 0
    assert r["cache_images"] == 8  # one feature entry per scene image
    text = format_results(r)
    assert "cached image features" in text and "encoders in the loop" in text
    assert r["dpo_pairs_per_s_encode_once"] > 0 and r["dpo_pairs_per_s_encode_per_box"] > 0
    assert "encoders once per pair" in text


@pytest.mark.slow
def test_training_bench_times_several_boxes_per_image():
    r = run_training_bench("tiny", batch_size=8, steps=1, warmup=0, scenes=8, trainer_loop=False,
                           model_step=False, boxes_per_image=4)
    assert r["grouped_k"] == 4 and r["grouped_boxes_per_step"] == 8
    for key in ("sft_boxes_per_s_1_per_image", "sft_boxes_per_s_4_per_image", "dpo_pairs_per_s_1_per_image",
                "dpo_pairs_per_s_4_per_image"):
        assert r[key] > 0
    assert "4 boxes per image" in format_results(r)


def test_projection_arithmetic_from_given_rates():
    """The projection is arithmetic on given rates and the configs' sizes (nothing is timed here)."""
    from locinsert.bench.training import OPA_TRAIN_POSITIVE_GROUPS_MAX, OPA_TRAIN_POSITIVES, PIPE_TRAIN_ROWS, projection

    rates = {"samples_per_s_with_cache": 100.0, "flops_per_sample": {"with_cache": {"train": 3.0, "forward": 1.0}}}
    p = projection(rates, gpus=(1, 4), configs_dir="training/configs")
    # pretrain_pipe / finetune_opa / dpo_opa: hflip doubles each epoch; 3, 10 and 3 epochs; DPO 16 pairs per
    # group, each pair costs 2 training passes + 2 reference forwards = (2*3 + 2*1) / 3 supervised examples
    examples = [2 * PIPE_TRAIN_ROWS * 3, 2 * OPA_TRAIN_POSITIVES * 10, 2 * 16 * OPA_TRAIN_POSITIVE_GROUPS_MAX * 3 * 8 / 3]
    per_stage = [st["seconds"]["Trainer loop"] for st in p["stages"]]
    for want, got in zip(examples, per_stage):
        assert got[1] == pytest.approx(want / 100.0) and got[4] == pytest.approx(want / 400.0)
    assert p["schedule_s"]["Trainer loop"][1] == pytest.approx(sum(examples) / 100.0)
    assert p["pipe_epoch_s"]["Trainer loop"][4] == pytest.approx(PIPE_TRAIN_ROWS / 400.0)
    with pytest.raises(ValueError, match="no with-cache throughput"):
        projection({"flops_per_sample": {}})
