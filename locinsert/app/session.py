"""``EditSession``: one person's edit, step by step: propose, pick a candidate, apply, next step.

It holds no web code, so the page, the tests and a script drive it the same way:

    session = EditSession({"add": AddObject(inserter), "remove": RemoveObject(editor)}, num_candidates=8)
    proposal = session.start(image, "add a cup on the left, then a plant near the right", seed=0)
    session.apply(index=2)            # the third candidate; session.apply() takes the most likely
    session.finish()                  # the remaining steps, most likely candidate each
    session.image, session.record()   # the edit and its JSON

Each step sees the image edited by the steps before it and keeps away from the boxes they
filled. One seeded ``torch.Generator`` drives sampling and drawing: the same seed and the same
picks give the same edit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..images import load_image
from ..validation import check_bool, check_non_negative_int, check_positive_int
from .operations import Operation, Proposal, Step, plan_steps

__all__ = ["EditSession", "AppliedStep"]


@dataclass
class AppliedStep:
    proposal: Proposal
    index: int

    @property
    def box(self) -> torch.Tensor:
        """The chosen candidate box, xyxy pixels."""
        return self.proposal.candidates.boxes[self.index]

    def to_dict(self, width: int, height: int) -> dict:
        """A JSON-ready record of this step for an image of ``width`` x ``height``."""
        from ..regions import region_json

        p = self.proposal
        d = {"operation": p.step.verb, "object": p.step.object,
             "reference": p.step.extra.get("reference") is not None,
             "region": region_json(p.step.region, width, height),
             "chosen": self.index, "box": [round(float(v), 2) for v in self.box],
             ("score" if p.step.verb == "remove" else "log_p"): round(float(p.candidates.log_p[self.index]), 4),
             "candidates": p.candidates.to_dict()}
        if p.candidates.fit is not None:
            d["fit"] = p.candidates.fit.to_dict()
        if "masks" in p.extra:     # remove: the chosen part's pixels were filled
            d["mask_pixels"] = int(p.extra["masks"][self.index].sum())
        if "source_box" in p.extra:   # move: where the object was
            d["source_box"] = [round(float(v), 2) for v in p.extra["source_box"]]
            d["target"] = p.region.name if p.region is not None else None
            d["mask_pixels"] = int(p.extra["mask"].sum())
        return d


class EditSession:
    """See the module docstring. ``operations`` maps a verb ("add") to its ``Operation``."""

    def __init__(self, operations: dict[str, Operation], num_candidates: int = 8, heatmap_samples: int = 256,
                 avoid_previous: bool = True):
        if not operations:
            raise ValueError("an EditSession needs at least one operation")
        self.operations = dict(operations)
        self.num_candidates = check_positive_int(num_candidates, "num_candidates")
        self.heatmap_samples = check_non_negative_int(heatmap_samples, "heatmap_samples (0 = no heatmap)")
        self.avoid_previous = check_bool(avoid_previous, "avoid_previous")
        self.original: Image.Image | None = None
        self.image: Image.Image | None = None
        self.instruction = ""
        self.steps: list[Step] = []
        self.applied: list[AppliedStep] = []
        self.proposal: Proposal | None = None
        self.blocked = ""   # why the next step has no candidates (e.g. no room left), or ""
        self.seed = 0
        self.generator = torch.Generator()

    # -- state -----------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether every step of the instruction has been applied."""
        return bool(self.steps) and len(self.applied) == len(self.steps)

    @property
    def step_index(self) -> int:
        """0-based index of the step now proposed (== number of steps applied)."""
        return len(self.applied)

    def _require_proposal(self) -> Proposal:
        if self.proposal is None:
            if not self.steps:
                raise ValueError("nothing to apply: upload an image, type an instruction and press Propose")
            if self.done:
                raise ValueError("every step of this instruction is done; press Propose to start again")
            raise ValueError(f"step {self.step_index + 1} has no candidates ({self.blocked}); change the "
                             "instruction and press Propose")
        return self.proposal

    # -- actions ---------------------------------------------------------------------------------

    def start(self, image, instruction: str, seed: int = 0, num_candidates: int | None = None,
              reference=None, move_by: str | None = None) -> Proposal:
        """Parse ``instruction``, reset to ``image`` and propose candidates for the first step.

        ``reference`` (a photo or RGBA cut-out) is the object to add: it goes to the added object
        written "it" / "this ..." (or to the only one), as in ``ObjectInserter``. ``move_by``
        ("cutout" or "redraw", as ``locinsert edit --move-by``) is how moved objects are drawn at
        their new place; None: the editor's setting.
        """
        from ..editing.editor import MOVE_BY

        if image is None:
            raise ValueError("no image: upload one (or pick an example) first")
        if move_by is not None and move_by not in MOVE_BY:
            raise ValueError(f"move by must be one of {', '.join(MOVE_BY)}, got {move_by!r}")
        img = load_image(image)
        steps = plan_steps(instruction)
        for s in steps:
            if s.verb == "move" and move_by is not None:
                s.extra["move_by"] = move_by
        if reference is not None:
            self._attach_reference(steps, reference)
        for s in steps:
            op = self.operations.get(s.verb)
            if op is None:
                raise ValueError(f"this page cannot {s.verb!r} yet; it can: {', '.join(self.operations)}")
            op.check(s)
            for r in (s.region, s.extra.get("target")):
                if r is not None and hasattr(r, "resolve"):
                    r.resolve(*img.size)   # an impossible region fails before any sampling
        if num_candidates is not None:
            self.num_candidates = check_positive_int(num_candidates, "number of candidates")
        self.original, self.image, self.instruction, self.steps = img, img, instruction, steps
        self.applied, self.proposal, self.blocked = [], None, ""
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        try:
            return self._propose()
        except ValueError:
            self.steps = []   # nothing started: the next action asks for a new instruction
            raise

    @staticmethod
    def _attach_reference(steps: list[Step], reference) -> None:
        from ..inpainting.reference import as_reference
        from ..editing.zero_shot import reference_steps

        ref = as_reference(reference)
        adds = [s for s in steps if s.verb == "add"]
        if not adds:
            raise ValueError("a reference image is the object to add, but the instruction adds nothing")
        for s, use in zip(adds, reference_steps([s.object for s in adds])):
            if use:
                s.extra["reference"] = ref

    def _propose(self) -> Proposal:
        step = self.steps[self.step_index]
        # A removed object's box is free again; only what was put somewhere is kept clear.
        placed = [a.box for a in self.applied if a.proposal.step.changes_place] if self.avoid_previous else []
        avoid = torch.stack(placed) if placed else torch.zeros(0, 4)
        self.proposal = self.operations[step.verb].propose(
            self.image, step, avoid=avoid, generator=self.generator, num_candidates=self.num_candidates,
            heatmap_samples=self.heatmap_samples)
        return self.proposal

    def pick(self, x: float, y: float) -> int | None:
        """The candidate under pixel (x, y) of the image, or ``None`` (see ``boxes.hit_test``)."""
        from ..boxes import hit_test

        return hit_test(self._require_proposal().candidates.boxes, x, y)

    def apply(self, index: int | None = None) -> Proposal | None:
        """Apply the current step at candidate ``index`` (``None`` = the most likely, index 0).

        Returns the next step's proposal, or ``None`` when the instruction is done or the next step
        has no candidates (``blocked`` says why, e.g. the boxes placed so far leave no room).
        """
        p = self._require_proposal()
        index = 0 if index is None else int(index)
        if not 0 <= index < len(p):
            raise ValueError(f"candidate {index + 1} does not exist; choose 1 to {len(p)}")
        self.image = self.operations[p.step.verb].apply(self.image, p, index, self.generator)
        self.applied.append(AppliedStep(p, index))
        self.proposal = None
        if self.done:
            return None
        try:
            return self._propose()
        except ValueError as e:   # the edit so far stands; the page shows why the next step cannot follow
            self.blocked = str(e)
            return None

    def finish(self) -> None:
        """Apply every remaining step at its most likely candidate (up to a step with no candidates)."""
        self._require_proposal()
        while self.proposal is not None:
            self.apply(None)

    # -- output ----------------------------------------------------------------------------------

    def record(self, **extra) -> dict:
        """The edit as JSON-ready data: instruction, image size, seed and every applied step."""
        if self.original is None:
            raise ValueError("no edit yet")
        w, h = self.original.size
        return {"instruction": self.instruction, "width": w, "height": h, "seed": self.seed,
                "box_format": "xyxy pixels", **extra, "done": self.done, "blocked": self.blocked or None,
                "steps": [a.to_dict(w, h) for a in self.applied]}
