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

import numpy as np
import torch
from PIL import Image

from ..editing.inserter import Candidates, ObjectInserter
from ..editing.instructions import parse_instructions
from ..regions import Region

__all__ = ["Step", "Proposal", "Operation", "AddObject", "RemoveObject", "MoveObject", "plan_steps"]


@dataclass
class Step:
    """One clause of an instruction: the verb, the object and where (``Region`` or ``None``)."""

    verb: str
    object: str
    region: Region | None = None
    extra: dict = field(default_factory=dict)   # whatever else an operation's parser found

    @property
    def changes_place(self) -> bool:
        """True if the step puts something at its box (add, move): later steps keep away from it."""
        return self.verb in ("add", "move")

    def describe(self) -> str:
        """A short label: the verb, the object and the region's phrase."""
        return f"{self.verb} {self.object}" + (f" ({self.region.name})" if self.region is not None else "")


@dataclass
class Proposal:
    """Candidate boxes for one step, best first, plus what helps a person choose."""

    step: Step
    candidates: Candidates
    heatmap: torch.Tensor | None = None   # (H, W) summing to 1, or None
    region: Region | None = None          # the region the candidates obey (with avoid boxes)
    note: str = ""
    labels: list[str] | None = None       # one per candidate; default: object and the model's log p
    extra: dict = field(default_factory=dict)   # what the operation needs to apply a candidate (masks, ...)

    def __len__(self) -> int:
        return len(self.candidates)

    def label(self, i: int) -> str:
        """The page's label for candidate ``i`` (1-based, with its log-probability or description)."""
        if self.labels is not None:
            return f"{i + 1}: {self.labels[i]}"
        return f"{i + 1}: {self.step.object}  (log p {float(self.candidates.log_p[i]):.2f})"


def _fit_note(cands: Candidates) -> str:
    """The fit verdict for the page: ". A cup hardly fits ... (0.4 % ...); it fits best on the right (71 %)"."""
    if cands.fit is None:
        return ""
    text = cands.fit.message
    return f". {'' if cands.fit.fits else '**'}{text[0].upper()}{text[1:]}{'' if cands.fit.fits else '**'}"


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
        """Numbered candidates (and optionally a heatmap) for one step of the instruction."""
        raise NotImplementedError

    def apply(self, image: Image.Image, proposal: Proposal, index: int, generator: torch.Generator) -> Image.Image:
        """The image after applying candidate ``index`` of ``proposal``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The settings this operation records in the edit's JSON."""
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
        """The inserter's location model."""
        return self.inserter.model

    def check(self, step: Step) -> None:
        """Refuse a step this inserter cannot draw (a reference its backend does not take, an unknown object)."""
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
        """Sample candidate boxes under the step's region, most likely first, with a heatmap of the object's centre."""
        region = step.region
        if avoid is not None and len(avoid):
            region = (region or Region(None)).with_avoid(avoid)
        cls = self.object_class(step)
        cands = self.inserter.propose(image, cls, region, None, generator, num_candidates).by_likelihood()
        heat = None
        if heatmap_samples > 0 and hasattr(self.model, "heatmap"):
            heat = self.model.heatmap(image, cls, region=region, num_samples=heatmap_samples,
                                      generator=generator, **self.inserter.sample_kwargs)
        where = step.region.name if step.region is not None else "anywhere"
        what = f"your reference (as a {cls})" if step.extra.get("reference") is not None else step.object
        note = f"{len(cands)} places for **{what}** ({where}" + \
               (f", away from {len(avoid)} object(s) added before)" if avoid is not None and len(avoid) else ")")
        return Proposal(step, cands, heat, region, note + _fit_note(cands))

    def apply(self, image, proposal, index, generator) -> Image.Image:
        """Draw the object in the chosen candidate box; pixels outside it are unchanged."""
        box = [float(v) for v in proposal.candidates.boxes[index]]
        ref = proposal.step.extra.get("reference")
        if ref is None:
            return self.inserter.inpainter.inpaint(image, box, proposal.step.object, generator=generator)
        return self.inserter.inpainter.inpaint(image, box, self.object_class(proposal.step), generator=generator,
                                               reference=ref)

    def describe(self) -> dict[str, Any]:
        """The settings this operation records in the edit's JSON."""
        return {"verb": self.verb, "inpainter": type(self.inserter.inpainter).__name__}


NO_SEGMENTER = ("finding an object by its name needs a segmenter, and this page has none: start the app with "
                "--segmenter clipseg (zero-shot, weights CIDAS/clipseg-rd64-refined) or --segmenter textmask "
                "--segmenter-model FOLDER (a model from `locinsert train textmask`)")


def _where(step: Step) -> str:
    return f" {step.region.name}" if step.region is not None and step.region.name else ""


class _FindsObjects(Operation):
    """Shared by remove and move: an ``ObjectEditor`` whose segmenter finds the object by its name."""

    def __init__(self, editor):
        from ..editing.editor import ObjectEditor

        if not isinstance(editor, ObjectEditor):
            raise TypeError(f"{type(self).__name__} needs an ObjectEditor, got {type(editor).__name__}")
        self.editor = editor

    def check(self, step: Step) -> None:
        if self.editor.segmenter is None:
            raise ValueError(f"cannot {step.verb} {step.object!r}: {NO_SEGMENTER}")

    def parts(self, image, step: Step) -> tuple[np.ndarray, list[np.ndarray]]:
        soft, parts = self.editor.find_parts(image, step.object, step.region)
        if not parts:
            raise ValueError(f"no {step.object!r} found{_where(step)} in the image (the segmenter's mask is "
                             f"below {self.editor.threshold:g} there); name it differently or change the place")
        return soft, parts

    def describe(self) -> dict[str, Any]:
        return {"verb": self.verb, "segmenter": type(self.editor.segmenter).__name__,
                "remover": type(self.editor.remover).__name__}


def _soft_heatmap(soft: np.ndarray) -> torch.Tensor | None:
    """The segmenter's soft mask as a map summing to 1 (what the page's heatmap shows), or None if empty."""
    h = torch.from_numpy(np.clip(soft, 0, None).astype(np.float32))
    total = float(h.sum())
    return h / total if total > 0 else None


class RemoveObject(_FindsObjects):
    """"remove the cup on the left": the candidates are the connected parts the segmenter finds for
    the object (centred in the region), largest first; the heatmap is its soft mask; applying fills
    the chosen part with the editor's remover. Pixels outside the part's (grown) mask do not change.
    """

    verb = "remove"

    def propose(self, image, step, *, avoid, generator, num_candidates, heatmap_samples) -> Proposal:
        """The found parts of the named object under the region, largest first, as candidates."""
        from ..boxes import mask_box

        soft, parts = self.parts(image, step)
        parts = parts[:num_candidates]
        boxes = torch.tensor([mask_box(m) for m in parts], dtype=torch.float32)
        # The candidates' "log p" is the log of the segmenter's mean confidence over each part.
        scores = torch.tensor([float(np.log(max(float(soft[m].mean()), 1e-8))) for m in parts])
        labels = [f"{step.object} ({int(m.sum())} px, confidence {float(soft[m].mean()):.2f})" for m in parts]
        note = (f"{len(parts)} part(s) found for **{step.object}**{_where(step)}: choose the one to remove")
        return Proposal(step, Candidates(boxes, scores), _soft_heatmap(soft), step.region, note, labels,
                        {"masks": parts})

    def apply(self, image, proposal, index, generator) -> Image.Image:
        """Fill the chosen part's mask with the remover."""
        return self.editor.remover.remove(image, proposal.extra["masks"][index], generator=generator)


class MoveObject(_FindsObjects):
    """"move the chair to the right": the object (every part found under its region) is cut out, its
    hole filled by the remover, and the location model proposes new boxes under the target region,
    away from the old place and from boxes filled before; applying puts the object in the chosen box
    (its own pixels, or re-drawn with ``move_by="redraw"``: the editor's setting, or the step's
    ``extra["move_by"]`` when the session was started with one). "next to the window" targets find the
    window first. Outside the hole and the new box, pixels do not change.
    """

    verb = "move"

    def __init__(self, editor):
        super().__init__(editor)
        if editor.inserter is None:
            raise ValueError("MoveObject needs an ObjectEditor with a location model")

    def check(self, step: Step) -> None:
        """Refuse a move without a destination."""
        super().check(step)
        if step.extra.get("target") is None:
            raise ValueError(f"say where to move the {step.object}, e.g. 'move the {step.object} to the right'")

    def propose(self, image, step, *, avoid, generator, num_candidates, heatmap_samples) -> Proposal:
        """Find the object, fill its place, and sample new boxes under the target region away from the old one."""
        from ..boxes import mask_box
        from ..editing.instructions import Near

        _, parts = self.parts(image, step)
        mask = np.logical_or.reduce(parts)
        old = torch.tensor(mask_box(mask), dtype=torch.float32)
        filled = self.editor.remover.remove(image, mask, generator=generator)
        target = step.extra["target"]
        region = target
        if isinstance(target, Near):
            region = self.editor.near_region(filled, target)
            if region is None:
                raise ValueError(f"no {target.object!r} found to move the {step.object} next to")
        keep_free = torch.cat([old[None], avoid.reshape(-1, 4).float()]) if avoid is not None else old[None]
        region = region.with_avoid(keep_free)
        inserter = self.editor.inserter
        cands = inserter.propose(filled, step.object, region, None, generator, num_candidates).by_likelihood()
        heat = None
        if heatmap_samples > 0 and hasattr(inserter.model, "heatmap"):
            heat = inserter.model.heatmap(filled, step.object, region=region, num_samples=heatmap_samples,
                                          generator=generator, **inserter.sample_kwargs)
        note = f"{len(cands)} new places for **{step.object}** ({region.name or 'target'}, away from where it was)"
        return Proposal(step, cands, heat, region, note + _fit_note(cands), None,
                        {"mask": mask, "filled": filled, "source_box": old})

    def apply(self, image, proposal, index, generator) -> Image.Image:
        """Paste the object into the chosen box, over the filled image."""
        x = proposal.extra
        return self.editor.put_moved(image, x["mask"], x["filled"], proposal.candidates.boxes[index],
                                     proposal.step.object, generator, move_by=proposal.step.extra.get("move_by"))
