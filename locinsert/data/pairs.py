"""Preference pairs for DPO: a plausible (chosen) and an implausible (rejected) box of the same query.

A query with P positives and Q negatives offers P x Q pairs. OPA's queries differ a lot in size
(one background may carry 40 labelled boxes, another 2), so two modes are offered:

``"all"``
    every (positive, negative) pair of every query, in a fixed order (query, positive, negative).
``"balanced"``
    ``pairs_per_query`` pairs per query, drawn without replacement from its P x Q pairs (all of
    them when it has fewer), so every query weighs about the same. The draw is a pure function of
    ``(seed, epoch, query index)``: the same epoch gives the same pairs on every process and after
    a resume, and a new epoch gives a fresh draw.

Queries without positives or without negatives give no pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .query import PlacementQuery


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: ``query_index`` into the query list, boxes xyxy pixels (4,) float."""

    query_index: int
    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_index: int
    rejected_index: int

    def to_dict(self) -> dict:
        """Plain-python form (e.g. for ``datasets.Dataset.from_list``)."""
        return {"query_index": self.query_index, "chosen": self.chosen.tolist(), "rejected": self.rejected.tolist(),
                "chosen_index": self.chosen_index, "rejected_index": self.rejected_index}


def _generator(seed: int, epoch: int, query_index: int) -> torch.Generator:
    # A distinct, reproducible stream per (seed, epoch, query): independent of iteration order.
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(query_index))
    return g


def preference_pairs(queries: Sequence[PlacementQuery], mode: str = "all", pairs_per_query: int = 4,
                     seed: int = 0, epoch: int = 0) -> list[PreferencePair]:
    """(chosen=positive, rejected=negative) pairs of each query; see the module docstring for the modes."""
    if mode not in ("all", "balanced"):
        raise ValueError(f"mode must be 'all' or 'balanced', got {mode!r}")
    if mode == "balanced" and (not isinstance(pairs_per_query, int) or pairs_per_query < 1):
        raise ValueError(f"pairs_per_query must be a positive integer, got {pairs_per_query!r}")
    out = []
    for qi, q in enumerate(queries):
        if not isinstance(q, PlacementQuery):
            raise TypeError(f"queries[{qi}] must be a PlacementQuery, got {type(q).__name__}")
        P, Q = len(q.positives), len(q.negatives)
        if P == 0 or Q == 0:
            continue
        if mode == "all" or P * Q <= pairs_per_query:
            flat = range(P * Q)
        else:
            flat = torch.randperm(P * Q, generator=_generator(seed, epoch, qi))[:pairs_per_query].sort().values.tolist()
        for f in flat:
            i, j = divmod(int(f), Q)
            out.append(PreferencePair(qi, q.positives[i].clone(), q.negatives[j].clone(), i, j))
    return out
