"""DPO preference pairs: all pairs, balanced per-query samples that are deterministic per (seed, epoch)."""

import pytest
import torch

from helpers_data import OPA_LABELS
from locinsert.data import PlacementQuery, load_opa, preference_pairs


def _queries():
    return [
        PlacementQuery("cup", [[0, 0, 10, 10], [5, 5, 15, 15]], [[20, 20, 30, 30], [1, 1, 2, 2], [3, 3, 9, 9]],
                       width=64, height=64),
        PlacementQuery("dog", [[0, 0, 5, 5]], [], width=64, height=64),        # no negatives: no pairs
        PlacementQuery("cat", [], [[0, 0, 5, 5]], width=64, height=64),        # no positives: no pairs
        PlacementQuery("car", [[1, 1, 8, 8]], [[2, 2, 9, 9]], width=64, height=64),
    ]


def test_all_pairs_enumerates_every_positive_negative_combination():
    qs = _queries()
    pairs = preference_pairs(qs, mode="all")
    assert len(pairs) == 2 * 3 + 1
    assert {p.query_index for p in pairs} == {0, 3}
    for p in pairs:
        q = qs[p.query_index]
        assert torch.equal(p.chosen, q.positives[p.chosen_index])
        assert torch.equal(p.rejected, q.negatives[p.rejected_index])
    assert len({(p.query_index, p.chosen_index, p.rejected_index) for p in pairs}) == len(pairs)
    d = pairs[0].to_dict()
    assert d["chosen"] == [0.0, 0.0, 10.0, 10.0] and d["query_index"] == 0


def test_balanced_is_deterministic_per_seed_and_epoch_and_caps_each_query():
    qs = list(load_opa(OPA_LABELS, split="test"))[:200]
    a = preference_pairs(qs, mode="balanced", pairs_per_query=3, seed=1, epoch=0)
    b = preference_pairs(qs, mode="balanced", pairs_per_query=3, seed=1, epoch=0)
    c = preference_pairs(qs, mode="balanced", pairs_per_query=3, seed=1, epoch=1)
    ids = lambda ps: [(p.query_index, p.chosen_index, p.rejected_index) for p in ps]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    per_query = {}
    for p in a:
        per_query[p.query_index] = per_query.get(p.query_index, 0) + 1
    for qi, n in per_query.items():
        q = qs[qi]
        assert n == min(3, len(q.positives) * len(q.negatives))
    assert len(set(ids(a))) == len(a)  # without replacement within a query
    # a subset of the queries draws the same pairs for them: draws depend on the query, not the order
    sub = preference_pairs(qs[:50], mode="balanced", pairs_per_query=3, seed=1, epoch=0)
    assert ids(sub) == [t for t in ids(a) if t[0] < 50]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        preference_pairs(_queries(), mode="some")
    with pytest.raises(ValueError, match="pairs_per_query"):
        preference_pairs(_queries(), mode="balanced", pairs_per_query=0)
    with pytest.raises(TypeError, match="PlacementQuery"):
        preference_pairs([{"positives": []}])
