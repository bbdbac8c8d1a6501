"""``ObjectInserter``: parse an instruction, sample where the object could go, pick a box, draw it.

    inserter = ObjectInserter(model, CutoutCompositor(sprite))
    out = inserter(image, "add a cup on the left, then a lamp on the right", generator=torch.Generator().manual_seed(0))
    out.image, out.box, out.candidates.boxes, out.candidates.logprobs, out.steps

Each object of a sequence sees the image edited by the previous ones and, by default, avoids the
boxes already inserted. One ``torch.Generator`` drives sampling, selection and the inpainter, so a
seeded generator reproduces the whole edit.

``ObjectInserter(model, inpainter, reference=img)`` inserts *this* object: the reference (a photo
or an RGBA cut-out) goes to the inpainter of the step it stands for ("add it on the left"), and the
location model gets its class from ``reference_class=``, the instruction's own word, or CLIP
zero-shot over a vocabulary (``locinsert.editing.zero_shot``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image, ImageDraw

from ..boxes import as_boxes, box_iou
from ..fit import FitVerdict, RegionDoesNotFit, fit_verdict, has_area, model_fit_threshold
from ..images import load_image
from .instructions import Instruction, parse_instructions
from ..regions import Region, as_region
from ..validation import check_bool, check_choice, check_float, check_int

__all__ = ["ObjectInserter", "InsertionResult", "InsertionStep", "Candidates", "SELECTIONS", "select_box",
           "refine_most_likely", "distinct_boxes", "overlay"]

SELECTIONS = ("logprob", "diverse", "random")


@dataclass
class Candidates:
    """Sampled boxes (N, 4) xyxy pixels with their likelihoods; best first is *not* implied.

    ``log_p`` (N,): the model's own log p(box), what ranks the boxes; ``log_q`` (N,) or ``None``:
    the step-wise masked sampler's log q (see ``BoxSamples``); ``fit``: the ``FitVerdict`` of the
    region they were drawn under (``None`` without a region or when not checked). ``logprobs`` is
    an alias of ``log_p``.
    """

    boxes: torch.Tensor
    log_p: torch.Tensor
    log_q: torch.Tensor | None = None
    fit: FitVerdict | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def logprobs(self) -> torch.Tensor:
        """Alias of ``log_p``."""
        return self.log_p

    def reordered(self, order: torch.Tensor) -> "Candidates":
        """The same candidates in ``order`` (indices)."""
        return Candidates(self.boxes[order], self.log_p[order], None if self.log_q is None else self.log_q[order],
                          self.fit)

    def by_likelihood(self) -> "Candidates":
        """The candidates sorted by ``log_p``, most likely first."""
        return self.reordered(torch.argsort(self.log_p, descending=True))

    def to_dict(self) -> dict:
        """A JSON-ready dict: the boxes, their log p and log q, and the fit verdict."""
        d = {"boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
             "log_p": [round(float(v), 4) for v in self.log_p]}
        if self.log_q is not None:
            d["log_q"] = [round(float(v), 4) for v in self.log_q]
        if self.fit is not None:
            d["fit"] = self.fit.to_dict()
        return d


@dataclass
class InsertionStep:
    """One object of an instruction: what, where allowed, the candidates, the chosen box, the image after."""

    object: str
    region: Region | None
    candidates: Candidates
    index: int
    image: Image.Image
    reference: bool = False   #: whether this step drew the reference image

    @property
    def box(self) -> torch.Tensor:
        """The chosen candidate box, xyxy pixels."""
        return self.candidates.boxes[self.index]

    @property
    def log_p(self) -> float:
        """The model's own log p of the chosen box."""
        return float(self.candidates.log_p[self.index])

    @property
    def logprob(self) -> float:
        """Alias of ``log_p``."""
        return self.log_p

    @property
    def fit(self) -> FitVerdict | None:
        """The fit verdict of this step's region (``None`` without a region)."""
        return self.candidates.fit


@dataclass
class InsertionResult:
    """The edited image and one ``InsertionStep`` per object. ``box``/``candidates``/``object``/``region``
    are those of the last (for a single object: the only) step."""

    image: Image.Image
    steps: list[InsertionStep] = field(default_factory=list)

    @property
    def box(self) -> torch.Tensor:
        """The box chosen for the last object, xyxy pixels."""
        return self.steps[-1].box

    @property
    def boxes(self) -> torch.Tensor:
        """(K, 4): the chosen box of every step, in order."""
        return torch.stack([s.box for s in self.steps])

    @property
    def candidates(self) -> Candidates:
        """The candidates proposed for the last object."""
        return self.steps[-1].candidates

    @property
    def object(self) -> str:
        """The last object inserted."""
        return self.steps[-1].object

    @property
    def region(self) -> Region | None:
        """The region of the last object, or ``None``."""
        return self.steps[-1].region


def distinct_boxes(boxes: torch.Tensor, logprobs: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Indices of the most likely box of each cluster, best first (greedy non-maximum suppression).

    ``logprobs``: the model's own log p of each box (``Candidates.log_p``).
    """
    order = torch.argsort(logprobs, descending=True)
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order.tolist():
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def refine_most_likely(model, cands: Candidates, image, obj: str, region=None, min_size: float | None = None) -> None:
    """Move the most likely of ``cands`` to its local maximum of log p (``model.refine``), in place.

    Its ``log_p`` (and ``log_q``, rescored) follow; the other candidates stay as drawn. A model
    without ``refine`` (a baseline) leaves the candidates as they are.
    """
    if not len(cands) or not hasattr(model, "refine"):
        return
    i = int(torch.argmax(cands.log_p))
    box, log_p = model.refine(image, obj, cands.boxes[i], region=region, min_size=min_size)
    if not log_p > float(cands.log_p[i]):
        return
    cands.boxes[i], cands.log_p[i] = box.to(cands.boxes.dtype), log_p
    if cands.log_q is not None:
        cands.log_q[i] = model.score(image, obj, box[None], region=region, min_size=min_size, likelihood="log_q")[0]


def select_box(boxes: torch.Tensor, logprobs: torch.Tensor, selection: str = "logprob", generator=None,
               diverse_top: int = 4, iou_threshold: float = 0.5) -> int:
    """Index of the chosen candidate; ``logprobs`` are the model's own log p (``Candidates.log_p``).

    Rank by log p, never by the masked sampler's log q: under a region, q rewards boxes whose later
    coordinates were forced by the mask (a forced token costs nothing under q), so the most
    distorted boxes would rank first.

    - ``"logprob"``: the most likely box;
    - ``"diverse"``: one of the ``diverse_top`` most likely *distinct* places (boxes overlapping a
      better one by IoU > ``iou_threshold`` are dropped), drawn uniformly: different seeds give
      visibly different, still likely, placements;
    - ``"random"``: a uniform draw among the candidates, i.e. a plain sample from the model.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    n = int(boxes.shape[0])
    if n == 0:
        raise ValueError("no candidate boxes to choose from")
    if selection == "logprob":
        return int(torch.argmax(logprobs))
    pool = torch.arange(n) if selection == "random" else distinct_boxes(boxes, logprobs, iou_threshold)[:diverse_top]
    pick = torch.randint(len(pool), (1,), generator=generator).item()
    return int(pool[pick])


class ObjectInserter:
    """Location model + inpainter = spatially aware object insertion.

    ``model`` is anything with ``sample(image, cls, num_samples=, region=, temperature=, top_k=, top_p=,
    min_size=, generator=)`` returning boxes and log-probs (a ``LocationModel``). ``inpainter`` is any
    object with ``inpaint(image, box, prompt, generator=None)`` (``locinsert.inpainting``).

    ``reference`` is a picture of the object to insert (the inpainter must accept ``reference=``).
    Its class for the location model: ``reference_class``, else the instruction's word ("this
    mug"), else ``classifier(reference, vocabulary)`` (a ``ZeroShotClassifier``; ``None`` loads
    open_clip ViT-B-32 / openai when first needed). ``reference_zero_shot`` keeps that result.

    Under a region (a phrase such as "on the right", a box or a mask) every step also gets a
    ``FitVerdict`` (``locinsert.fit``): the share of the model's probability inside the region and,
    when that is below ``fit_threshold`` (default: the model's calibrated threshold, else the
    library's; ``locinsert.fit.model_fit_threshold``), the supported phrase where the object fits best. By
    default the object is still placed at the most likely box inside the region; ``strict=True``
    raises ``RegionDoesNotFit`` instead. ``check_fit=False`` skips the verdict (and its cost).
    Candidates are drawn by ``model.sample``'s default sampler (exact conditional sampling under
    the region; ``sampler=`` picks another) and ranked by the model's own log p. With ``refine``
    (default) the most likely candidate is then moved uphill in log p to its local maximum
    (``LocationModel.refine``): under a region that made the chosen box plausible more often.
    """

    def __init__(self, model, inpainter, num_candidates: int = 16, selection: str = "logprob", *,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 min_size: float | None = None, avoid_previous: bool = True, diverse_top: int = 4,
                 reference=None, reference_class: str | None = None, classifier=None,
                 vocabulary: Sequence[str] | None = None, strict: bool = False,
                 fit_threshold: float | None = None, check_fit: bool = True, sampler: str | None = None,
                 refine: bool = True):
        if not hasattr(model, "sample"):
            raise TypeError(f"model must have a sample() method (a LocationModel), got {type(model).__name__}")
        if inpainter is not None and not hasattr(inpainter, "inpaint"):
            raise TypeError(f"inpainter must have an inpaint(image, box, prompt, generator) method, "
                            f"got {type(inpainter).__name__}")
        self.model, self.inpainter = model, inpainter
        self.num_candidates = check_int(num_candidates, "num_candidates", minimum=1)
        self.selection = check_choice(selection, "selection", SELECTIONS)
        self.sample_kwargs = dict(
            temperature=check_float(temperature, "temperature", minimum=0, low_open=True),
            top_k=check_int(top_k, "top_k", minimum=1, optional=True),
            top_p=check_float(top_p, "top_p", minimum=0, maximum=1, low_open=True, optional=True),
            min_size=check_float(min_size, "min_size", minimum=0, optional=True))
        if sampler is not None:  # only then: any model with a plain sample() keeps working
            from ..modeling.model import SAMPLERS

            self.sample_kwargs["sampler"] = check_choice(sampler, "sampler", SAMPLERS)
        self.avoid_previous = check_bool(avoid_previous, "avoid_previous")
        self.strict = check_bool(strict, "strict")
        self.check_fit = check_bool(check_fit, "check_fit")
        self.refine = check_bool(refine, "refine")
        self.fit_threshold = model_fit_threshold(model, fit_threshold)
        if self.strict and not self.check_fit:
            raise ValueError("strict=True refuses regions the object does not fit, so it needs check_fit=True")
        self.diverse_top = check_int(diverse_top, "diverse_top", minimum=1)
        self.reference = self._check_reference(reference)
        if reference_class is not None and (not isinstance(reference_class, str) or not reference_class.strip()):
            raise ValueError(f"reference_class must be a non-empty class name, got {reference_class!r}")
        self.reference_class = reference_class.strip() if reference_class else None
        self.classifier, self.vocabulary = classifier, vocabulary
        self.reference_zero_shot = None     # ZeroShotResult of the last reference classified
        self._zero_shot_of = None

    def _check_reference(self, reference):
        if reference is None:
            return None
        from ..inpainting.base import check_reference_support
        from ..inpainting.reference import as_reference

        if self.inpainter is not None:
            check_reference_support(self.inpainter)
        return as_reference(reference)

    def reference_object(self, obj: str, reference) -> str:
        """The class the location model gets for the reference step whose instruction text is ``obj``."""
        from .zero_shot import named_class

        if self.reference_class:
            return self.reference_class
        named = named_class(obj)
        if named:
            return named
        if self._zero_shot_of is not reference:
            if self.classifier is None:
                from .zero_shot import ZeroShotClassifier

                try:
                    self.classifier = ZeroShotClassifier.from_pretrained()
                except (OSError, RuntimeError) as e:
                    raise ValueError(f"the instruction names no class ({obj!r}) and the zero-shot CLIP could not be "
                                     f"loaded ({e}); pass reference_class= or classifier=") from e
            result = self.classifier(reference, self.vocabulary)
            if isinstance(result, str):          # a plain callable naming the class
                from .zero_shot import ZeroShotResult

                result = ZeroShotResult(result, {result: 1.0})
            self.reference_zero_shot = result
            self._zero_shot_of = reference
        return self.reference_zero_shot.label

    def propose(self, image, obj: str, region=None, avoid=None, generator=None,
                num_candidates: int | None = None) -> Candidates:
        """Sample candidate boxes for ``obj`` in ``image`` under ``region`` (and away from ``avoid`` boxes).

        Raises:
            RegionDoesNotFit: with ``strict=True``, when ``obj`` hardly fits ``region``.
        """
        img = load_image(image)
        region = as_region(region)
        if avoid is not None and len(avoid):
            region = (region or Region(None)).with_avoid(as_boxes(avoid, "avoid boxes"))
        n = self.num_candidates if num_candidates is None else check_int(num_candidates, "num_candidates", minimum=1)
        reuse = getattr(self.model, "reusing_prefixes", None)   # a LocationModel: encode the image once
        with reuse() if reuse is not None else contextlib.nullcontext():
            return self._propose(img, obj, region, n, generator)

    def _propose(self, img, obj: str, region, n: int, generator) -> Candidates:
        verdict = None
        if self.check_fit and has_area(region) and hasattr(self.model, "region_mass"):
            verdict = fit_verdict(self.model, img, obj, region, threshold=self.fit_threshold,
                                  min_size=self.sample_kwargs.get("min_size"), generator=generator)
            if self.strict and not verdict.fits:
                raise RegionDoesNotFit(verdict)
        elif self.strict and has_area(region):
            raise TypeError(f"strict=True needs a model with region_mass() (a LocationModel), "
                            f"got {type(self.model).__name__}")
        s = self.model.sample(img, obj, num_samples=n, region=region,
                              generator=generator, **self.sample_kwargs)
        log_p = getattr(s, "log_p", None)
        log_p = s.logprobs if log_p is None else log_p
        log_q = getattr(s, "log_q", None)
        cands = Candidates(torch.as_tensor(s.boxes, dtype=torch.float32).reshape(-1, 4).clone(),
                           torch.as_tensor(log_p, dtype=torch.float32).reshape(-1).clone(),
                           None if log_q is None else torch.as_tensor(log_q, dtype=torch.float32).reshape(-1).clone(),
                           verdict)
        if self.refine:
            refine_most_likely(self.model, cands, img, obj, region, self.sample_kwargs.get("min_size"))
        return cands


    def __call__(self, image, instruction: str | Instruction | Sequence[str | Instruction], generator=None, *,
                 region=None, avoid=None, reference=None) -> InsertionResult:
        """Carry out ``instruction`` ("add a cup on the left, then a lamp") on ``image``.

        ``region`` (a ``Region``, box, mask or phrase) replaces the instruction's own location for
        every object; ``avoid`` boxes are kept free in every step; ``reference`` replaces the
        inserter's reference image for this call.
        """
        if self.inpainter is None:
            raise ValueError("this ObjectInserter has no inpainter; use propose() or pass one")
        img = load_image(image)
        ref = self._check_reference(reference) if reference is not None else self.reference
        steps: list[InsertionStep] = []
        avoid = as_boxes(avoid, "avoid boxes") if avoid is not None and len(avoid) else torch.zeros(0, 4)
        override = as_region(region)
        plan = _instructions(instruction)
        if ref is None:
            uses = [False] * len(plan)
        else:
            from .zero_shot import reference_steps

            uses = reference_steps([ins.object for ins in plan])
        for ins, use in zip(plan, uses):
            obj = self.reference_object(ins.object, ref) if use else ins.object
            where = override or ins.region
            keep_free = torch.cat([avoid] + [s.box[None] for s in steps]) if self.avoid_previous else avoid
            cands = self.propose(img, obj, where, keep_free, generator)
            index = select_box(cands.boxes, cands.log_p, self.selection, generator, self.diverse_top)
            box = [float(v) for v in cands.boxes[index]]
            if use:
                img = self.inpainter.inpaint(img, box, obj, generator=generator, reference=ref)
            else:
                img = self.inpainter.inpaint(img, box, obj, generator=generator)
            steps.append(InsertionStep(obj, where, cands, index, img, reference=use))
        return InsertionResult(img, steps)


def _instructions(instruction) -> list[Instruction]:
    if isinstance(instruction, Instruction):
        return [instruction]
    if isinstance(instruction, str):
        parsed = parse_instructions(instruction)
        other = [p for p in parsed if not isinstance(p, Instruction)]
        if other:
            raise ValueError(f"ObjectInserter only adds objects, but {instruction!r} asks to {other[0].verb} "
                             f"{other[0].object!r}; use locinsert.ObjectEditor")
        return parsed
    if hasattr(instruction, "verb"):     # RemoveInstruction, MoveInstruction (tuples too: check first)
        raise ValueError(f"ObjectInserter only adds objects, not {instruction.verb!r}; use locinsert.ObjectEditor")
    if isinstance(instruction, (list, tuple)) and instruction:
        out: list[Instruction] = []
        for item in instruction:
            out.extend(_instructions(item))
        return out
    raise TypeError(f"instruction must be a str, an Instruction or a list of them, got {type(instruction).__name__}")


def overlay(image, candidates=None, chosen=None, *, logprobs=None, region=None, width: int | None = None,
            labels: Sequence[str] | None = None) -> Image.Image:
    """Draw candidate boxes (thin, brighter = more likely), the chosen box(es) (thick red) and the region.

    ``candidates`` may be a ``Candidates`` (its log-probs shade the boxes) or (N, 4) boxes;
    ``chosen`` one box or (K, 4) boxes; ``region`` a ``Region`` drawn as a dashed-looking outline.
    """
    img = load_image(image).copy()
    W, H = img.size
    lw = width or max(1, round(min(W, H) / 160))
    draw = ImageDraw.Draw(img, "RGBA")
    if region is not None:
        x1, y1, x2, y2 = as_region(region).resolve(W, H).bounds()
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(255, 255, 255, 200), width=lw)
    if candidates is not None:
        if isinstance(candidates, Candidates):
            boxes, lps = candidates.boxes, candidates.log_p
        else:
            boxes, lps = as_boxes(candidates, "candidates"), logprobs
        shade = torch.ones(len(boxes))
        if lps is not None and len(boxes) > 1:
            lps = torch.as_tensor(lps, dtype=torch.float32)
            shade = (lps - lps.min()) / (lps.max() - lps.min()).clamp(min=1e-6)
        for b, s in zip(boxes.tolist(), shade.tolist()):
            draw.rectangle(b, outline=(255, 220, 0, int(80 + 175 * s)), width=max(1, lw // 2))
    if chosen is not None:
        chosen_boxes = as_boxes(chosen, "chosen box")
        for i, b in enumerate(chosen_boxes.tolist()):
            draw.rectangle(b, outline=(230, 30, 30, 255), width=lw * 2)
            if labels is not None and i < len(labels):
                draw.text((b[0] + 2 * lw, b[1] + 2 * lw), labels[i], fill=(230, 30, 30, 255))
    return img
