"""``ObjectEditor``: add, remove and move objects from one instruction.

    editor = ObjectEditor(model, inpainter=CutoutCompositor(sprite), segmenter=seg, remover=BiharmonicFill())
    out = editor(image, "remove the cup on the left, then add a plant on the right", generator=g)
    out.image, out.mask, out.box, out.found, out.steps, out.to_dict()

Verbs (``locinsert.editing.instructions``):

- **add**: the ``ObjectInserter`` path (location model samples boxes under the region, the
  inpainter draws inside the chosen one);
- **remove**: ``segmenter.segment(image, text)`` gives a soft mask; it is thresholded, split into
  connected parts, and only the parts whose centre lies in the instruction's region are kept
  ("the cup *on the left*"); the remover fills them. Nothing found is an outcome, not an
  exception: the step has ``found=False`` and the image is unchanged (``strict=True`` raises
  ``ObjectNotFound`` instead);
- **move**: the object is found as for removal, cut out with its mask as alpha (``move_by="cutout"``,
  the exact pixels) or re-drawn by class with the editor's inpainter (``"redraw"``); its hole is
  filled; the location model samples a new box under the target region, avoiding the old place;
  the object goes there. ``Near("window")`` targets find the window first and search around it.
  The step's ``fit`` says whether the object fits the target region (``locinsert.fit``);
  ``strict=True`` raises ``RegionDoesNotFit`` for a target (or an add's region) it hardly fits.

A segmenter is anything with ``segment(image, text) -> (H, W) float in [0, 1]`` at the image's size
(``locinsert.segmentation``); a remover anything with ``remove(image, mask, generator=None)``
(``locinsert.inpainting.removal``). ``remove(image, mask=...)`` / ``move(image, target, mask=...)``
skip the segmenter when you already know the object's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..boxes import mask_box
from ..images import as_mask, check_threshold, load_image
from .inserter import Candidates, ObjectInserter, overlay, select_box
from .instructions import Instruction, MoveInstruction, Near, RemoveInstruction, parse_instructions
from ..regions import Region, as_region
from ..validation import check_bool, check_non_negative_int

__all__ = ["ObjectEditor", "EditResult", "EditStep", "ObjectNotFound", "MOVE_BY", "edit_overlay", "cutout"]

MOVE_BY = ("cutout", "redraw")


class ObjectNotFound(ValueError):
    """Raised by ``strict=True`` editors when the segmenter finds nothing for an object."""


@dataclass
class EditStep:
    """One verb of an instruction and its outcome.

    ``mask``: the object's pixels that were removed (remove, move) or ``None`` (add); ``box``: the
    removed object's box (remove) or the new box (add, move); ``source_box``: where a moved object
    was; ``candidates`` / ``index``: the sampled boxes and the chosen one (add, move);
    ``found=False``: the object (or a ``Near`` anchor) was not found and ``image`` is unchanged.
    """

    verb: str
    object: str
    region: Region | None
    image: Image.Image
    found: bool = True
    mask: np.ndarray | None = None
    box: torch.Tensor | None = None
    source_box: torch.Tensor | None = None
    target: Region | Near | None = None
    candidates: Candidates | None = None
    index: int | None = None
    message: str = ""

    @property
    def log_p(self) -> float | None:
        """The model's own log p of the new box (add, move); ``None`` otherwise."""
        return None if self.candidates is None else float(self.candidates.log_p[self.index])

    @property
    def logprob(self) -> float | None:
        """Alias of ``log_p``."""
        return self.log_p

    @property
    def fit(self):
        """The ``FitVerdict`` of the region the new box was drawn under (add, move), or ``None``."""
        return None if self.candidates is None else self.candidates.fit

    def to_dict(self) -> dict:
        """JSON-ready: boxes as xyxy pixel lists, the mask as its box and pixel count."""
        W, H = self.image.size
        d = {"verb": self.verb, "object": self.object, "found": self.found,
             "region": _region_dict(self.region, W, H),
             "box": _box_list(self.box), "log_p": None if self.log_p is None else round(self.log_p, 4)}
        if self.verb == "move":
            d["source_box"] = _box_list(self.source_box)
            d["target"] = ({"near": self.target.object} if isinstance(self.target, Near)
                           else _region_dict(self.target, W, H))
        if self.mask is not None:
            d["mask_box"] = _box_list(mask_box(self.mask))
            d["mask_pixels"] = int(self.mask.sum())
        if self.candidates is not None:
            d["candidates"] = self.candidates.to_dict()
            if self.fit is not None:
                d["fit"] = self.fit.to_dict()
        if self.message:
            d["message"] = self.message
        return d


@dataclass
class EditResult:
    """The edited image and one ``EditStep`` per verb; ``mask``/``box`` summarise what changed."""

    image: Image.Image
    steps: list[EditStep] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """True if every object (and anchor) of the instruction was found."""
        return all(s.found for s in self.steps)

    @property
    def not_found(self) -> list[str]:
        """The objects of the steps that found nothing."""
        return [s.object for s in self.steps if not s.found]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: every removed or moved object's pixels (empty for additions only)."""
        m = np.zeros((self.image.height, self.image.width), bool)
        for s in self.steps:
            if s.mask is not None:
                m |= s.mask
        return m

    @property
    def box(self) -> torch.Tensor | None:
        """The last found step's box (for one verb: its only box)."""
        boxes = [s.box for s in self.steps if s.found and s.box is not None]
        return boxes[-1] if boxes else None

    @property
    def boxes(self) -> torch.Tensor:
        """(K, 4): the box of every found step, in order."""
        boxes = [s.box for s in self.steps if s.found and s.box is not None]
        return torch.stack(boxes) if boxes else torch.zeros(0, 4)

    def to_dict(self) -> dict:
        """A JSON-ready record: image size, found or not, and every step."""
        return {"width": self.image.width, "height": self.image.height, "box_format": "xyxy pixels",
                "found": self.found, "not_found": self.not_found, "steps": [s.to_dict() for s in self.steps]}


class ObjectEditor:
    """Location model + inpainter + segmenter + remover = add, remove and move by instruction.

    ``model`` and ``inpainter`` are those of ``ObjectInserter`` (needed to add and to move; the
    inpainter only to add and for ``move_by="redraw"``); ``segmenter`` finds objects from text
    (needed unless masks are given); ``remover`` fills holes (default: ``BiharmonicFill()``).
    ``threshold`` binarises the segmenter's mask (default: the segmenter's own ``threshold``
    attribute, else 0.5); parts smaller than ``min_pixels`` are noise. ``strict=True`` raises
    ``ObjectNotFound`` for an object the segmenter does not find and ``RegionDoesNotFit`` for a
    region (an add's, or a move's target) the object hardly fits (``locinsert.fit``).
    """

    def __init__(self, model=None, inpainter=None, segmenter=None, remover=None, *, threshold: float | None = None,
                 min_pixels: int = 4, move_by: str = "cutout", strict: bool = False, num_candidates: int = 16,
                 selection: str = "logprob", **sample_kwargs):
        if segmenter is not None and not hasattr(segmenter, "segment"):
            raise TypeError(f"segmenter must have a segment(image, text) method, got {type(segmenter).__name__}")
        if remover is None:
            from ..inpainting.removal import BiharmonicFill
            remover = BiharmonicFill()
        if not hasattr(remover, "remove"):
            raise TypeError(f"remover must have a remove(image, mask, generator) method, got {type(remover).__name__}")
        if threshold is None:
            threshold = getattr(segmenter, "threshold", 0.5)
        threshold = check_threshold(threshold)
        if move_by not in MOVE_BY:
            raise ValueError(f"move_by must be one of {MOVE_BY}, got {move_by!r}")
        if move_by == "redraw" and inpainter is None:
            raise ValueError("move_by='redraw' needs an inpainter to draw the object again")
        self.inserter = (ObjectInserter(model, inpainter, num_candidates=num_candidates, selection=selection,
                                        strict=bool(strict), **sample_kwargs) if model is not None else None)
        self.segmenter, self.remover = segmenter, remover
        self.threshold, self.min_pixels = threshold, check_non_negative_int(min_pixels, "min_pixels")
        self.move_by, self.strict = move_by, check_bool(strict, "strict")

    # -- finding ---------------------------------------------------------------------------------

    def find(self, image, text: str, region=None) -> np.ndarray:
        """(H, W) bool mask of ``text`` in ``image`` (only its parts centred in ``region``); may be empty."""
        img = load_image(image)
        keep = np.zeros((img.height, img.width), bool)
        for part in self.find_parts(img, text, region)[1]:
            keep |= part
        return keep

    def find_parts(self, image, text: str, region=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(the segmenter's soft (H, W) mask, the connected parts of its thresholded mask that are
        centred in ``region``, each an (H, W) bool mask, largest first). The parts may be none.

        The web app offers the parts as separate candidates ("which cup?"); ``find`` joins them.
        """
        from skimage.measure import label, regionprops

        if self.segmenter is None:
            raise ValueError("this ObjectEditor has no segmenter: pass segmenter= (e.g. a CLIPSegSegmenter) "
                             "or give the object's mask")
        img = load_image(image)
        W, H = img.size
        soft = np.asarray(self.segmenter.segment(img, text), dtype=np.float32)
        if soft.shape != (H, W):
            raise ValueError(f"segmenter returned a {soft.shape} mask for a {W}x{H} image; "
                             "segment() must return (H, W) at the image's size")
        mask = soft > self.threshold
        where = as_region(region)
        allowed = where.resolve(W, H).area_mask() if where is not None else None
        parts = label(mask, connectivity=2)
        kept = []
        for part in sorted(regionprops(parts), key=lambda p: -p.area):
            if part.area < self.min_pixels:
                continue
            cy, cx = (int(v) for v in part.centroid)
            if allowed is None or allowed[min(cy, H - 1), min(cx, W - 1)]:
                kept.append(parts == part.label)
        return soft, kept

    def _object_mask(self, img, obj, region, mask) -> np.ndarray:
        if mask is not None:
            return as_mask(mask, img.size)
        return self.find(img, obj, region)

    # -- verbs -----------------------------------------------------------------------------------

    def remove(self, image, object: str | None = None, region=None, *, mask=None, generator=None) -> EditResult:
        """Remove ``object`` (found by the segmenter under ``region``) or the pixels of ``mask``."""
        img = load_image(image)
        img, step = self._remove(img, object or "object", as_region(region), mask, generator)
        return EditResult(img, [step])

    def move(self, image, target, object: str | None = None, region=None, *, mask=None, avoid=None,
             generator=None) -> EditResult:
        """Move ``object`` (or the pixels of ``mask``) to ``target`` (a region, phrase or ``Near``)."""
        img = load_image(image)
        tgt = target if isinstance(target, Near) else as_region(target)
        if tgt is None:
            raise ValueError("move needs a target: a region, a phrase such as 'on the left', or Near('window')")
        placed = [torch.as_tensor(b, dtype=torch.float32) for b in (avoid if avoid is not None else [])]
        img, step = self._move(img, object or "object", as_region(region), tgt, mask, placed, generator)
        return EditResult(img, [step])

    def __call__(self, image, instruction, generator=None, *, mask=None) -> EditResult:
        """Carry out ``instruction`` ("remove the cup, then add a plant on the left") on ``image``.

        ``mask`` gives the object's pixels for a single remove or move instead of the segmenter.
        """
        img = load_image(image)
        steps_in = _parse(instruction)
        if mask is not None and len(steps_in) != 1:
            raise ValueError("mask= applies to a single remove or move instruction, "
                             f"got {len(steps_in)} instructions")
        steps: list[EditStep] = []
        for ins in steps_in:
            placed = [s.box for s in steps if s.found and s.verb in ("add", "move")]
            if isinstance(ins, RemoveInstruction):
                img, step = self._remove(img, ins.object, ins.region, mask, generator)
            elif isinstance(ins, MoveInstruction):
                img, step = self._move(img, ins.object, ins.region, ins.target, mask, placed, generator)
            else:
                if mask is not None:
                    raise ValueError("mask= applies to remove and move instructions, not to add")
                img, step = self._add(img, ins, placed, generator)
            steps.append(step)
        return EditResult(img, steps)

    def _missing(self, img, verb, obj, region, what: str, **kw) -> EditStep:
        msg = f"{what} not found" + (f" {region.name}" if region is not None and region.name else "")
        if self.strict:
            raise ObjectNotFound(f"cannot {verb} {obj!r}: {msg}")
        return EditStep(verb, obj, region, img, found=False, message=msg, **kw)

    def _remove(self, img, obj, region, mask, generator):
        m = self._object_mask(img, obj, region, mask)
        if not m.any():
            return img, self._missing(img, "remove", obj, region, repr(obj))
        out = self.remover.remove(img, m, generator=generator)
        return out, EditStep("remove", obj, region, out, mask=m, box=torch.tensor(mask_box(m)))

    def _add(self, img, ins: Instruction, avoid, generator):
        if self.inserter is None or self.inserter.inpainter is None:
            raise ValueError(f"adding {ins.object!r} needs a location model and an inpainter")
        res = self.inserter(img, [ins], generator=generator, avoid=torch.stack(avoid) if avoid else None)
        s = res.steps[0]
        return res.image, EditStep("add", s.object, s.region, res.image, box=s.box, candidates=s.candidates,
                                   index=s.index)

    def _move(self, img, obj, region, target, mask, avoid, generator):
        if self.inserter is None:
            raise ValueError(f"moving {obj!r} needs a location model to choose the new place")
        m = self._object_mask(img, obj, region, mask)
        if not m.any():
            return img, self._missing(img, "move", obj, region, repr(obj), target=target)
        old = mask_box(m)
        filled = self.remover.remove(img, m, generator=generator)
        where = target
        if isinstance(target, Near):
            where = self.near_region(filled, target)
            if where is None:
                return img, self._missing(img, "move", obj, region, f"{target.object!r} (the destination)",
                                          target=target)
        keep_free = [torch.tensor(old, dtype=torch.float32)] + list(avoid or [])
        cands = self.inserter.propose(filled, obj, where, torch.stack(keep_free), generator)
        index = select_box(cands.boxes, cands.log_p, self.inserter.selection, generator, self.inserter.diverse_top)
        box = [float(v) for v in cands.boxes[index]]
        out = self.put_moved(img, m, filled, box, obj, generator)
        return out, EditStep("move", obj, region, out, mask=m, box=cands.boxes[index], source_box=torch.tensor(old),
                             target=target, candidates=cands, index=index)

    def put_moved(self, image: Image.Image, mask: np.ndarray, filled: Image.Image, box, obj: str,
                  generator=None, move_by: str | None = None) -> Image.Image:
        """The moved object drawn into ``box`` of ``filled`` (``image`` with the hole of ``mask``
        filled): its own pixels cut out of ``image`` (``move_by="cutout"``) or drawn again by class
        (``"redraw"``); ``move_by=None`` is the editor's own setting."""
        box = [float(v) for v in box]
        move_by = self.move_by if move_by is None else move_by
        if move_by not in MOVE_BY:
            raise ValueError(f"move_by must be one of {MOVE_BY}, got {move_by!r}")
        if move_by == "redraw" and self.inserter.inpainter is None:
            raise ValueError("moving by redrawing needs an inpainter to draw the object again")
        if move_by == "cutout":
            from ..inpainting.cutout import CutoutCompositor
            return CutoutCompositor(cutout(image, mask), allow_opaque=True).inpaint(filled, box, obj,
                                                                                   generator=generator)
        return self.inserter.inpainter.inpaint(filled, box, obj, generator=generator)

    def near_region(self, img, near: Near) -> Region | None:
        """A region around the anchor object: its box widened by its width on each side, height by half
        its height; the anchor's own box is kept free."""
        anchor = self.find(img, near.object)
        if not anchor.any():
            return None
        x1, y1, x2, y2 = mask_box(anchor)
        w, h = x2 - x1, y2 - y1
        W, H = img.size
        rect = (max(0.0, x1 - w), max(0.0, y1 - h / 2), min(float(W), x2 + w), min(float(H), y2 + h / 2))
        return Region(rect, normalized=False, mode="center", avoid=[[x1, y1, x2, y2]], name=f"near the {near.object}")


def cutout(img: Image.Image, mask: np.ndarray) -> Image.Image:
    """The object's pixels with its mask as alpha, cropped to the mask's box."""
    rgba = np.dstack([np.asarray(img), mask.astype(np.uint8) * 255])
    x1, y1, x2, y2 = (int(v) for v in mask_box(mask))
    return Image.fromarray(rgba[y1:y2, x1:x2], "RGBA")


def _parse(instruction) -> list:
    if isinstance(instruction, str):
        return parse_instructions(instruction)
    if isinstance(instruction, (Instruction, RemoveInstruction, MoveInstruction)):
        return [instruction]
    if isinstance(instruction, (list, tuple)) and instruction and not hasattr(instruction, "_fields"):
        return [p for item in instruction for p in _parse(item)]
    raise TypeError(f"instruction must be a str, a parsed instruction or a list of them, "
                    f"got {type(instruction).__name__}")


def _box_list(box) -> list[float] | None:
    return None if box is None else [round(float(v), 2) for v in box]


def _region_dict(region, width: int, height: int) -> dict | None:
    if region is None:
        return None
    r = region.resolve(width, height)
    return {"phrase": region.name, "mode": region.mode, "rect": [round(v, 2) for v in r.bounds()]}


def edit_overlay(result: EditResult, original=None, *, labels: bool = True) -> Image.Image:
    """The edited image with removed/moved objects' masks tinted red (their old place), the new boxes
    in thick red, and the last sampled candidates in yellow (``inserter.overlay``)."""
    img = load_image(result.image)
    m = result.mask
    if m.any():
        a = np.asarray(img, np.float32)
        a[m] = 0.55 * a[m] + 0.45 * np.array([230, 30, 30], np.float32)
        img = Image.fromarray(np.rint(a).astype(np.uint8))
    with_cands = [s for s in result.steps if s.found and s.candidates is not None]
    found = [s for s in result.steps if s.found and s.box is not None]
    return overlay(img, with_cands[-1].candidates if with_cands else None,
                   chosen=torch.stack([s.box for s in found]) if found else None,
                   labels=[f"{s.verb} {s.object}" for s in found] if labels else None)
