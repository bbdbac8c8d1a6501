"""The TPR/FPR metric on hand-computed cases, and the batched version against the per-query loop."""

import math

import pytest
import torch

from locinsert.evaluation import match, tpr_fpr, tpr_fpr_loop, tpr_fpr_prefixes

E = torch.zeros(0, 4)


def B(*boxes):
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def test_prediction_matches_best_labelled_box_jointly():
    # Prediction [0,0,10,10]: IoU 0.81 with the negative [0,0,9,9], 0.71 with the positive [0,0,10,14]
    # -> it matches the negative only, even though it would also clear 0.5 with the positive.
    pos, neg = B([0, 0, 10, 14]), B([0, 0, 9, 9])
    r = tpr_fpr([B([0, 0, 10, 10])], [pos], [neg])
    assert (r.matched_positives, r.matched_negatives, r.ignored) == (0, 1, 0)
    assert r.tpr == 0.0 and r.fpr == 1.0


def test_tie_goes_to_first_positive_then_negative():
    # [0,0,10,10] has IoU exactly 0.5 with both [0,0,10,20] and [0,0,20,10]: a tie (threshold 0.4).
    pred = B([0, 0, 10, 10])
    pos, neg = B([0, 0, 10, 20]), B([0, 0, 20, 10])
    r = tpr_fpr([pred], [pos], [neg], iou_threshold=0.4)
    assert (r.matched_positives, r.matched_negatives) == (1, 0)
    # Same IoU with two negatives: the first one in the given order wins.
    r = tpr_fpr([pred], [E], [B([0, 0, 20, 10], [0, 0, 10, 20])], iou_threshold=0.4)
    m = match([pred], [E], [B([0, 0, 20, 10], [0, 0, 10, 20])], iou_threshold=0.4)
    assert r.matched_negatives == 1 and m.first_hit[0].tolist()[0] == 0 and m.first_hit[0, 1] > 100
    # Swap which box is the positive: the positive still wins, as positives come first in the order.
    r = tpr_fpr([pred], [B([0, 0, 20, 10])], [B([0, 0, 10, 20])], iou_threshold=0.4)
    assert (r.matched_positives, r.matched_negatives) == (1, 0)


def test_label_hit_by_several_predictions_counts_once():
    pos = B([0, 0, 10, 10], [50, 50, 60, 60])
    preds = B([0, 0, 10, 10], [0, 0, 10, 9], [1, 0, 10, 10])  # all three hit the first positive
    r = tpr_fpr([preds], [pos], [E])
    assert (r.matched_positives, r.num_positives, r.positive_predictions) == (1, 2, 3)
    assert r.tpr == 0.5
    # The predictions variant counts each matched prediction: 3 / 2 positives.
    rp = tpr_fpr([preds], [pos], [E], count="predictions")
    assert rp.tpr == 1.5 and math.isnan(rp.fpr)


def test_unmatched_predictions_are_ignored_and_counted():
    pos, neg = B([0, 0, 10, 10]), B([20, 20, 30, 30])
    preds = B([0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 30, 30])  # hit, nowhere, overlaps both weakly
    r = tpr_fpr([preds], [pos], [neg])
    assert (r.matched_positives, r.matched_negatives, r.ignored, r.num_predictions) == (1, 0, 2, 3)
    assert r.tpr == 1.0 and r.fpr == 0.0


def test_iou_exactly_at_threshold_does_not_match():
    pos = B([0, 0, 10, 10])
    half = B([0, 0, 10, 5])  # IoU exactly 0.5
    assert tpr_fpr([half], [pos], [E], iou_threshold=0.5).matched_positives == 0
    assert tpr_fpr([half], [pos], [E], iou_threshold=0.4999).matched_positives == 1
    assert tpr_fpr([half], [pos], [E], iou_threshold=0.5).ignored == 1


def test_empty_predictions_and_queries_without_positives():
    # Query 0: no predictions. Query 1: no positives, one negative that gets hit. Query 2: no labels at all.
    preds = [E, B([0, 0, 10, 10]), B([5, 5, 9, 9])]
    pos = [B([0, 0, 4, 4]), E, E]
    neg = [E, B([0, 0, 10, 10]), E]
    r = tpr_fpr(preds, pos, neg)
    assert (r.num_positives, r.num_negatives, r.matched_negatives, r.num_predictions, r.ignored) == (1, 1, 1, 2, 1)
    assert r.tpr == 0.0 and r.fpr == 1.0
    assert r.per_query["num_predictions"].tolist() == [0, 1, 1]
    # Nothing labelled anywhere: rates are undefined (nan), counts are still right.
    r = tpr_fpr([B([0, 0, 1, 1])], [E], [E])
    assert math.isnan(r.tpr) and math.isnan(r.fpr) and r.ignored == 1
    # No predictions at all.
    r = tpr_fpr([E, E], [B([0, 0, 4, 4]), E], [E, B([0, 0, 4, 4])])
    assert (r.tpr, r.fpr, r.num_predictions) == (0.0, 0.0, 0)


def test_pooled_rates_differ_from_per_query_mean():
    # Query A: 1 of 1 positives hit. Query B: 0 of 3 positives hit.
    preds = [B([0, 0, 10, 10]), B([90, 90, 99, 99])]
    pos = [B([0, 0, 10, 10]), B([0, 0, 5, 5], [10, 10, 15, 15], [20, 20, 25, 25])]
    r = tpr_fpr(preds, pos, [E, E])
    assert r.tpr == pytest.approx(1 / 4)          # pooled: (1 + 0) / (1 + 3)
    assert r.macro_tpr == pytest.approx(1 / 2)    # mean of per-query TPRs: (1 + 0) / 2
    assert r.per_query["matched_positives"].tolist() == [1, 0]
    assert math.isnan(r.macro_fpr)


def test_prefixes_equal_recomputing_each_k():
    g = torch.Generator().manual_seed(3)

    def rand_boxes(n):
        xy = torch.rand(n, 2, generator=g) * 50
        return torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 30], 1)

    preds = [rand_boxes(int(n)) for n in torch.randint(0, 40, (25,), generator=g)]
    pos = [rand_boxes(int(n)) for n in torch.randint(0, 4, (25,), generator=g)]
    neg = [rand_boxes(int(n)) for n in torch.randint(0, 6, (25,), generator=g)]
    ks = [1, 5, 10, 20, 39, 60]
    all_k = tpr_fpr_prefixes(preds, pos, neg, ks, iou_threshold=0.3)
    for k, r in zip(ks, all_k):
        direct = tpr_fpr([p[:k] for p in preds], pos, neg, iou_threshold=0.3)
        assert r.counts() | {"k": None} == direct.counts()
    # Monotone in K for the labels count, and something was actually hit.
    assert all(a.matched_positives <= b.matched_positives for a, b in zip(all_k, all_k[1:]))
    assert all_k[-1].matched_positives > 0 and all_k[-1].matched_negatives > 0


def test_batched_equals_reference_loop_on_random_data():
    g = torch.Generator().manual_seed(7)

    def rand_boxes(n):
        xy = torch.randint(0, 40, (n, 2), generator=g).float()  # integer boxes make exact ties likely
        return torch.cat([xy, xy + torch.randint(2, 20, (n, 2), generator=g).float()], 1)

    preds = [rand_boxes(30) for _ in range(40)]
    pos = [rand_boxes(int(n)) for n in torch.randint(0, 5, (40,), generator=g)]
    neg = [rand_boxes(int(n)) for n in torch.randint(0, 8, (40,), generator=g)]
    for count in ("labels", "predictions"):
        fast = tpr_fpr(preds, pos, neg, iou_threshold=0.25, count=count)
        slow = tpr_fpr_loop(preds, pos, neg, iou_threshold=0.25, count=count)
        assert fast.counts() == slow.counts()
        assert fast.matched_positives > 0
    # Chunking over queries changes nothing.
    a = match(preds, pos, neg, 0.25, chunk_size=7).counts()
    assert a.counts() == tpr_fpr(preds, pos, neg, 0.25).counts()


def test_per_query_selection():
    preds = [B([0, 0, 10, 10]), B([0, 0, 10, 10])]
    pos = [B([0, 0, 10, 10]), B([50, 50, 60, 60])]
    m = match(preds, pos, [E, E])
    assert m.counts(queries=torch.tensor([True, False])).tpr == 1.0
    assert m.counts(queries=[1]).tpr == 0.0
    assert m.counts(k=0).num_predictions == 0
    assert m.counts(queries=[]).num_queries == 0
    # One (queries, N, 4) tensor works as well as a list.
    assert tpr_fpr(torch.stack(preds), pos, [E, E]).matched_positives == 1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="one entry per query"):
        tpr_fpr([E], [E, E], [E])
    with pytest.raises(ValueError, match=r"pred_boxes\[0\] must have shape"):
        tpr_fpr([torch.zeros(3, 5)], [E], [E])
    with pytest.raises(ValueError, match="NaN"):
        tpr_fpr([B([0, 0, float("nan"), 1])], [E], [E])
    with pytest.raises(ValueError, match="iou_threshold"):
        tpr_fpr([E], [E], [E], iou_threshold=1.5)
    with pytest.raises(ValueError, match="count"):
        tpr_fpr([E], [E], [E], count="boxes")
    with pytest.raises(TypeError, match="list"):
        tpr_fpr("boxes", [E], [E])


def test_bench_runs_small_and_reports_consistent_figures(tmp_path, capsys):
    import json

    from locinsert.bench.evaluation import bench, main, make_problem

    preds, pos, neg = make_problem(num_queries=30, k=20, labels_per_query=4, seed=1)
    assert len(preds) == 30 and all(len(p) == 20 for p in preds)
    assert all(1 <= len(p) + len(n) <= 7 for p, n in zip(pos, neg))
    r = bench(num_queries=30, k=20, labels_per_query=4, loop_queries=0, repeats=1, ks=(10, 20))
    assert r["num_predictions"] == 600 and r["ks"] == [10, 20] and r["loop_queries_measured"] == 30
    assert r["speedup_single"] > 0 and r["tpr_at_k"] > 0  # jittered label copies must match something
    assert main(["--", "--num-queries", "10", "-k", "10", "--loop-queries", "5", "--repeats", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    assert "batched" in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["loop_queries_measured"] == 5
