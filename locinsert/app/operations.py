"""The edits the web app offers, one small class each.

An ``Operation`` handles one verb of an instruction ("add"). It does two things:

- ``propose(image, step, ...) -> Proposal``: candidate boxes for the step, best first. It may also
  return a heatmap and a note for the page.
- ``apply(image, proposal, index, generator) -> PIL.Image``: carry out the step at candidate ``index``.

``EditSession`` (``session.py``) runs the steps of an instruction through the operation named by
each step's verb. A new verb (remove, move) is a new ``Operation`` registered under that verb. The
page (``page.py``) needs no change for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from PIL import Image

from ..inserter import Candidates, ObjectInserter
from ..instructions import parse_instructions
from ..regions import Region

__all__ = ["Step", "Proposal", "Operation", "AddObject", "plan_steps"]


@dataclass
class Step:
    """One clause of an instruction: the verb, the object and where (``Region`` or ``None``)."""

    verb: str
    object: str
    region: Region | None = None
    extra: dict = field(default_factory=dict)   # whatever else an operation's parser found

    def describe(self) -> str:
        return f"{self.verb} {self.object}" + (f" ({self.region.name})" if self.region is not None else "")


@dataclass
class Proposal:
    """Candidate boxes for one step, best first, plus what helps a person choose."""

    step: Step
    candidates: Candidates
    heatmap: torch.Tensor | None = None   # (H, W) summing to 1, or None
    region: Region | None = None          # the region the candidates obey (with avoid boxes)
    note: str = ""
    labels: list[str] | None = None       # one per candidate; default: object and log p
    extra: dict = field(default_factory=dict)   # what the operation needs to apply a candidate (masks, ...)

    def __len__(self) -> int:
        return len(self.candidates)

    def label(self, i: int) -> str:
        if self.labels is not None:
            return f"{i + 1}: {self.labels[i]}"
        return f"{i + 1}: {self.step.object}  (log p {float(self.candidates.logprobs[i]):.2f})"


def plan_steps(instruction: str) -> list[Step]:
    """Split an instruction into steps: each parsed instruction's ``verb`` ("add" when it has none),
    object and region; any further field (a move's ``target``) goes into ``Step.extra``."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("type an instruction first, e.g. 'add a cup on the left, then a plant near the right'")
    steps = []
    for ins in parse_instructions(instruction):
        extra = {k: v for k, v in ins._asdict().items() if k not in ("object", "region")}
        steps.append(Step(getattr(ins, "verb", "add"), ins.object, ins.region, extra))
    return steps


class Operation:
    """Base class of the page's operations (see the module docstring)."""

    verb: str = ""

    def check(self, step: Step) -> None:
        """Raise ``ValueError`` if this operation cannot do ``step``, before any work starts."""

    def propose(self, image: Image.Image, step: Step, *, avoid: torch.Tensor, generator: torch.Generator,
                num_candidates: int, heatmap_samples: int) -> Proposal:
        raise NotImplementedError

    def apply(self, image: Image.Image, proposal: Proposal, index: int, generator: torch.Generator) -> Image.Image:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"verb": self.verb}


class AddObject(Operation):
    """"add a cup on the left": the location model proposes boxes, the inpainter draws in the chosen one.

    ``objects`` limits the objects the inpainter can draw from text (the synthetic sprites); ``None``
    = any. A step with ``extra["reference"]`` (a ``Reference``: "add *this* mug", see
    ``EditSession.start``) draws that object instead, and the location model gets its class from
    the instruction's word or the inserter's ``reference_class`` / zero-shot classifier.
    Sampling options (temperature, min_size, ...) are the ``inserter``'s.
    """

    verb = "add"

    def __init__(self, inserter: ObjectInserter, objects: Sequence[str] | None = None):
        if inserter.inpainter is None:
            raise ValueError("AddObject needs an ObjectInserter with an inpainter")
        self.inserter = inserter
        self.objects = None if objects is None else tuple(objects)

    @property
    def model(self):
        return self.inserter.model

    def check(self, step: Step) -> None:
        ref = step.extra.get("reference")
        if ref is not None:
            from ..inpainting import CutoutCompositor
            from ..inpainting.base import check_reference_support

            check_reference_support(self.inserter.inpainter)
            if isinstance(self.inserter.inpainter, CutoutCompositor) and not ref.has_alpha:
                raise ValueError("the reference has no transparency, and the cut-out inpainter would paste its whole "
                                 "rectangle: upload an RGBA cut-out, or start the app with --inpainter "
                                 "paint-by-example or repaint, which take photos")
            return
        if self.objects is not None and step.object not in self.objects:
            raise ValueError(f"the cut-out inpainter can draw only {', '.join(self.objects)}, not "
                             f"{step.object!r}; start the app with --cutout PNG or a diffusion --inpainter "
                             "to draw anything")

    def object_class(self, step: Step) -> str:
        """What the location model is asked to place: the object, or the reference's class."""
        ref = step.extra.get("reference")
        return step.object if ref is None else self.inserter.reference_object(step.object, ref)

    def propose(self, image, step, *, avoid, generator, num_candidates, heatmap_samples) -> Proposal:
        region = step.region
        if avoid is not None and len(avoid):
            region = (region or Region(None)).with_avoid(avoid)
        cls = self.object_class(step)
        cands = self.inserter.propose(image, cls, region, None, generator, num_candidates)
        order = torch.argsort(cands.logprobs, descending=True)
        cands = Candidates(cands.boxes[order], cands.logprobs[order])
        heat = None
        if heatmap_samples > 0 and hasattr(self.model, "heatmap"):
            heat = self.model.heatmap(image, cls, region=region, num_samples=heatmap_samples,
                                      generator=generator, **self.inserter.sample_kwargs)
        where = step.region.name if step.region is not None else "anywhere"
        what = f"your reference (as a {cls})" if step.extra.get("reference") is not None else step.object
        note = f"{len(cands)} places for **{what}** ({where}" + \
               (f", away from {len(avoid)} object(s) added before)" if avoid is not None and len(avoid) else ")")
        return Proposal(step, cands, heat, region, note)

    def apply(self, image, proposal, index, generator) -> Image.Image:
        box = [float(v) for v in proposal.candidates.boxes[index]]
        ref = proposal.step.extra.get("reference")
        if ref is None:
            return self.inserter.inpainter.inpaint(image, box, proposal.step.object, generator=generator)
        return self.inserter.inpainter.inpaint(image, box, self.object_class(proposal.step), generator=generator,
                                               reference=ref)

    def describe(self) -> dict[str, Any]:
        return {"verb": self.verb, "inpainter": type(self.inserter.inpainter).__name__}
