"""Does the object fit where it was asked? Fit verdicts for positional prompts.

"Add a cup in the top left corner" of a room whose only table is on the right has no good answer:
every box in that corner is implausible. The location model knows it: the share of its probability
that falls in the region, P(box in region | image, class), is tiny. :func:`fit_verdict` measures that
share with ``LocationModel.region_mass`` and compares it with a threshold; when the object hardly
fits, it also names the supported phrase where it fits best::

    a cup hardly fits in the top left corner here (0.4 % of the model's probability); it fits best
    on the right (71 %)

The default threshold, :data:`DEFAULT_FIT_THRESHOLD`, was calibrated on the synthetic world (held-out
scenes whose ground truth says which regions have room for the class; see
``locinsert.editing.positional.calibrate_threshold`` and the positional-prompts guide). A model
calibrated on its own (``config.fit_threshold``, written by ``locinsert eval --positional --calibrate
--save-threshold``) uses its own threshold instead: :func:`model_fit_threshold`.
``ObjectInserter``, ``ObjectEditor`` (move) and the CLI attach a :class:`FitVerdict` to their
candidates; with ``strict=True`` they raise :class:`RegionDoesNotFit` instead of placing the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .regions import Region, as_region
from .validation import check_float, check_int

__all__ = ["DEFAULT_FIT_THRESHOLD", "model_fit_threshold", "FIT_SAMPLES", "ALTERNATIVE_PHRASES", "FitVerdict", "RegionDoesNotFit",
           "fit_verdict", "has_area", "describe_region", "save_fit_threshold"]

#: Below this share of the model's probability the object "hardly fits" the region. Calibrated on
#: the synthetic world with the default-budget demo model: on 480 requests of calibration scenes
#: disjoint from the test split, the largest threshold that keeps 92 % of the requests that fit
#: (``calibrate_threshold``) was 0.043, rounded to 0.04; it flags 95 % of the hopeless ones there.
DEFAULT_FIT_THRESHOLD = 0.04


def model_fit_threshold(model, threshold: float | None = None, *, name: str = "fit_threshold") -> float:
    """The fit threshold to use with ``model``: ``threshold`` when given, else the model's calibrated
    ``config.fit_threshold``, else :data:`DEFAULT_FIT_THRESHOLD`; checked to lie in [0, 1] (``name``
    is what an error calls it).

    The threshold belongs to the model: a better-trained model puts less of its probability where an
    object has no room (on the synthetic world the ``long`` budget's model keeps 90 % of the fitting
    requests at 0.02, the default budget's at 0.04).
    """
    if threshold is None:
        threshold = getattr(getattr(model, "config", None), "fit_threshold", None)
        if threshold is None:
            return DEFAULT_FIT_THRESHOLD
    return check_float(threshold, name, minimum=0, maximum=1)


def save_fit_threshold(model_dir, threshold: float) -> float:
    """Write ``threshold`` (rounded to 3 decimals) into a saved model's ``config.json`` as ``fit_threshold``.

    Only that field changes, and the file is replaced atomically. Returns the value written.
    """
    import json
    from pathlib import Path

    from .io import write_text_atomic

    value = round(check_float(threshold, "fit threshold", minimum=0, maximum=1), 3)
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{str(model_dir)!r} is not a saved model folder (it has no config.json)")
    config = json.loads(path.read_text())
    config["fit_threshold"] = value
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return value


#: Importance samples behind one region mass (its standard error falls as 1 / sqrt of this).
FIT_SAMPLES = 128
#: Unconstrained samples that estimate the alternatives' masses when the asked region hardly fits.
ALTERNATIVE_SAMPLES = 256
#: The supported phrases among which the best-fitting alternative is chosen.
ALTERNATIVE_PHRASES = ("on the left", "on the right", "near the top", "near the bottom", "in the top left corner",
                       "in the top right corner", "in the bottom left corner", "in the bottom right corner",
                       "in the center")


def _percent(mass: float) -> str:
    value = 100.0 * mass
    if value >= 10:
        return f"{value:.0f} %"
    if value >= 0.1:
        return f"{value:.1f} %"
    return "< 0.1 %" if value > 0 else "0 %"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def has_area(region: Region | None) -> bool:
    """Whether ``region`` restricts where a box goes (a rectangle or mask), not only what it avoids."""
    return region is not None and (region.rect is not None or region.mask is not None)


_PREPOSITIONS = {"on", "in", "at", "near", "to", "by", "along", "toward", "towards", "against", "next", "close",
                 "above", "below", "inside", "within"}


def describe_region(region: Region) -> str:
    """The words for ``region`` in a message: its phrase ("on the left"), or "in the given region".

    A bare phrase gets its preposition back: "left" -> "on the left", "top left" -> "in the top left",
    "top" -> "at the top".
    """
    if not region.name:
        return "in the given region"
    name = " ".join(region.name.split())
    words = name.lower().split()
    if words[0] in _PREPOSITIONS:
        return name
    if words[0] == "the":
        name, words = " ".join(name.split()[1:]), words[1:]
    if words and words[0] in ("left", "right"):
        return f"on the {name}"
    if words and words[0] in ("top", "bottom", "upper", "lower") and len(words) == 1:
        return f"at the {name}"
    return f"in the {name}"


@dataclass
class FitVerdict:
    """How much of the model's probability the asked region holds, and where the object fits best.

    ``mass`` (with ``stderr``): the model's estimate of P(box in region | image, class);
    ``fits``: ``mass >= threshold``; ``best`` / ``best_mass``: the supported phrase with the most
    probability (only computed when the object hardly fits; ``None`` otherwise).
    """

    object: str
    where: str
    mass: float
    stderr: float
    threshold: float
    best: str | None = None
    best_mass: float | None = None

    @property
    def fits(self) -> bool:
        """Whether the region holds at least ``threshold`` of the model's probability."""
        return self.mass >= self.threshold

    @property
    def message(self) -> str:
        """One line for a person: "a chair hardly fits on the right here (0.4 % ...); it fits best on the left (71 %)"."""
        what = f"{_article(self.object)} {self.object}"
        share = f"{_percent(self.mass)} of the model's probability"
        if self.fits:
            return f"{what} fits {self.where} here ({share})"
        text = f"{what} hardly fits {self.where} here ({share})"
        if self.best is not None:
            text += f"; it fits best {self.best} ({_percent(self.best_mass)})"
        return text

    def to_dict(self) -> dict:
        """JSON-ready fields (the CLI writes these under ``"fit"``)."""
        return {"fits": self.fits, "region_mass": round(self.mass, 6), "stderr": round(self.stderr, 6),
                "threshold": self.threshold, "where": self.where, "best_alternative": self.best,
                "best_alternative_mass": None if self.best_mass is None else round(self.best_mass, 4),
                "message": self.message}


class RegionDoesNotFit(ValueError):
    """Raised in strict mode when the object hardly fits the asked region; ``verdict`` says where it fits best."""

    def __init__(self, verdict: FitVerdict):
        self.verdict = verdict
        hint = f'; try "{verdict.best}" instead' if verdict.best else ""
        super().__init__(f"{verdict.message} (below the fit threshold {_percent(verdict.threshold)}, "
                         f"strict mode){hint}")


def _alternative_masses(model, image, obj: str, region: Region, phrases, num_samples: int, min_size,
                        generator) -> dict[str, float]:
    """P(box in each phrase's region, away from ``region``'s avoid boxes), from one unconstrained draw."""
    from .images import load_image
    from .modeling.constraints import BoxConstraints

    img = load_image(image)
    s = model.sample(img, obj, num_samples=num_samples, min_size=min_size, generator=generator)
    valid_mass = float(s.region_mass) if getattr(s, "region_mass", None) is not None else 1.0
    out = {}
    for phrase in phrases:
        alt = Region.parse(phrase, avoid=region.avoid)
        try:
            ok = BoxConstraints(img.width, img.height, model.config.num_bins, alt, min_size).satisfied(s.boxes)
        except ValueError:  # no box can lie there (e.g. covered by avoid boxes)
            out[phrase] = 0.0
            continue
        out[phrase] = valid_mass * float(ok.double().mean())
    return out


def fit_verdict(model, image, obj: str, region, *, threshold: float | None = None,
                num_samples: int = FIT_SAMPLES, min_size: float | None = None,
                generator: torch.Generator | None = None, alternatives=ALTERNATIVE_PHRASES,
                alternative_samples: int = ALTERNATIVE_SAMPLES) -> FitVerdict | None:
    """The fit verdict of placing ``obj`` in ``region`` of ``image`` (``None`` if the region has no area).

    ``threshold``: None uses the model's own (:func:`model_fit_threshold`).
    ``model`` needs ``region_mass`` (a ``LocationModel``). When the object hardly fits, the masses of
    the ``alternatives`` (phrases; those that describe the asked rectangle itself are skipped) are
    estimated from ``alternative_samples`` unconstrained boxes and the largest is named.

    Raises:
        ValueError: bad threshold or sample counts, or a region no box can satisfy.
        TypeError: a model without ``region_mass``.
    """
    threshold = model_fit_threshold(model, threshold, name="fit threshold")
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    alternative_samples = check_int(alternative_samples, "alternative_samples", minimum=1)
    region = as_region(region)
    if not has_area(region):
        return None
    if not hasattr(model, "region_mass"):
        raise TypeError(f"fit verdicts need a model with region_mass() (a LocationModel), got {type(model).__name__}")
    mass = model.region_mass(image, obj, region, num_samples=num_samples, min_size=min_size, generator=generator)
    verdict = FitVerdict(obj, describe_region(region), float(mass), float(getattr(mass, "stderr", float("nan"))),
                         threshold)
    if not verdict.fits and alternatives:
        from .regions import phrase_to_box

        own = phrase_to_box(region.name) if region.name else None
        phrases = [p for p in alternatives if own is None or phrase_to_box(p) != own]
        masses = _alternative_masses(model, image, obj, region, phrases, alternative_samples, min_size, generator)
        if masses:
            best = max(masses, key=masses.get)
            if masses[best] > verdict.mass:
                verdict.best, verdict.best_mass = best, masses[best]
    return verdict
