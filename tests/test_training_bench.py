"""`locinsert bench training`: samples/s with and without the encoder-feature cache (figures, never timed asserts)."""

from locinsert.bench.training import format_results, run_training_bench


def test_training_bench_reports_both_runs():
    r = run_training_bench("tiny", batch_size=4, steps=2, warmup=1, scenes=8)
    assert r["samples_per_s_without_cache"] > 0 and r["samples_per_s_with_cache"] > 0
    assert r["cache_images"] == 8  # one feature entry per scene image
    text = format_results(r)
    assert "cached image features" in text and "encoders in the loop" in text
    assert r["dpo_pairs_per_s_encode_once"] > 0 and r["dpo_pairs_per_s_encode_per_box"] > 0
    assert "encoders once per pair" in text


def test_training_bench_times_several_boxes_per_image():
    r = run_training_bench("tiny", batch_size=8, steps=1, warmup=0, scenes=8, trainer_loop=False,
                           model_step=False, boxes_per_image=4)
    assert r["grouped_k"] == 4 and r["grouped_boxes_per_step"] == 8
    for key in ("sft_boxes_per_s_1_per_image", "sft_boxes_per_s_4_per_image", "dpo_pairs_per_s_1_per_image",
                "dpo_pairs_per_s_4_per_image"):
        assert r[key] > 0
    assert "4 boxes per image" in format_results(r)
