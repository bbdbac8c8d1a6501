"""Which object of an instruction the reference image is, and what class the location model gets for it.

The location model needs a class name; "add it on the left" with a reference photo names none.
The class comes from, in this order:

1. the user (``reference_class=`` / ``--reference-class``);
2. the instruction, when it names one: "add this mug on the left" -> "mug" (a leading
   demonstrative or possessive, "this / that / my / our / your", is dropped);
3. CLIP zero-shot classification of the reference over a vocabulary (``ZeroShotClassifier``:
   open_clip's image and text towers, ``"a photo of a {}."``; default vocabulary: the 80 COCO
   classes, from which OPA's 47 are drawn).

Which object *is* the reference (``reference_steps``): every object written as a pronoun or with a
demonstrative ("it", "this", "this one", "the object", "this mug", "my chair"); if there is none
and the instruction has a single object, that object; otherwise the instruction is ambiguous and
that is a ``ValueError`` ("add it on the left, then a lamp" says which).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image

__all__ = ["COCO_CLASSES", "refers_to_reference", "named_class", "reference_steps", "ZeroShotClassifier",
           "ZeroShotResult", "DEFAULT_ZERO_SHOT", "DEFAULT_ZERO_SHOT_PRETRAINED"]

DEFAULT_ZERO_SHOT = "ViT-B-32"
DEFAULT_ZERO_SHOT_PRETRAINED = "openai"
TEMPLATE = "a photo of a {}."

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")

# What is left of "add it / this / this one / the object" after the parser drops verbs and articles.
_PRONOUN = re.compile(r"^(?:it|this|that|these|those|them|this one|that one|object|thing|item|reference|"
                      r"reference object|(?:this|that|my|our|your) (?:object|thing|item|one))$", re.IGNORECASE)
_DEMONSTRATIVE = re.compile(r"^(?:this|that|my|our|your)\s+", re.IGNORECASE)


def refers_to_reference(obj: str) -> bool:
    """Whether an instruction's object text points at the reference ("it", "this one", "this mug")."""
    text = " ".join(obj.split())
    return bool(_PRONOUN.match(text) or _DEMONSTRATIVE.match(text))


def named_class(obj: str) -> str | None:
    """The class an object text names ("this mug" -> "mug"), or None for a bare pronoun ("it")."""
    text = " ".join(obj.split())
    if _PRONOUN.match(text):
        return None
    return _DEMONSTRATIVE.sub("", text) or None


def reference_steps(objects: Sequence[str]) -> list[bool]:
    """For each object of an instruction, whether it is the reference (see the module docstring)."""
    marks = [refers_to_reference(o) for o in objects]
    if any(marks):
        return marks
    if len(objects) == 1:
        return [True]
    raise ValueError(f"the instruction adds {len(objects)} objects ({', '.join(objects)}) and none of them is "
                     "marked as the reference: write it as 'it' or 'this ...', e.g. 'add it on the left, then a lamp'")


@dataclass
class ZeroShotResult:
    """The chosen ``label`` and the probability of every class of the vocabulary, most likely first."""

    label: str
    probs: dict[str, float] = field(default_factory=dict)

    def top(self, k: int = 5) -> dict[str, float]:
        """The ``k`` most likely classes with their probabilities."""
        return dict(list(self.probs.items())[:k])


class ZeroShotClassifier:
    """CLIP zero-shot classification of a reference image with open_clip (image and text towers).

    ``ZeroShotClassifier.from_pretrained()`` loads ViT-B-32 with OpenAI's weights (the hub or a warm
    cache); ``"hf-hub:org/repo"`` and ``"local-dir:FOLDER"`` (``open_clip_config.json`` + weights) load
    through open_clip's own loader. ``classifier(reference, vocabulary=None) -> ZeroShotResult``.
    """

    def __init__(self, model, preprocess, tokenizer, vocabulary: Sequence[str] = COCO_CLASSES,
                 template: str = TEMPLATE):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.vocabulary = check_vocabulary(vocabulary)
        self.template = template
        self._text_cache: dict[tuple[str, ...], object] = {}

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_ZERO_SHOT, pretrained: str | None = DEFAULT_ZERO_SHOT_PRETRAINED,
                        *, device=None, **kwargs) -> "ZeroShotClassifier":
        """Load an open_clip model (a name with its tag, ``hf-hub:`` or ``local-dir:``)."""
        import open_clip

        schema = name.startswith(("hf-hub:", "local-dir:"))
        if not schema and not pretrained:
            raise ValueError(f"open_clip {name!r} without pretrained weights would classify at random: pass "
                             "pretrained= (e.g. 'openai'), or an 'hf-hub:' / 'local-dir:' model")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None if schema else pretrained,
                                                                     load_weights=True)
        if device is not None:
            model = model.to(device)
        return cls(model, preprocess, open_clip.get_tokenizer(name), **kwargs)

    def text_features(self, vocabulary: tuple[str, ...]):
        """Normalised text embeddings of the vocabulary's prompts, cached per vocabulary."""
        import torch

        if vocabulary not in self._text_cache:
            device = next(self.model.parameters()).device
            tokens = self.tokenizer([self.template.format(c) for c in vocabulary]).to(device)
            with torch.no_grad():
                f = self.model.encode_text(tokens).float()
            self._text_cache[vocabulary] = f / f.norm(dim=-1, keepdim=True)
        return self._text_cache[vocabulary]

    def image_features(self, images: Sequence[Image.Image]):
        """Normalised image embeddings of the images."""
        import torch

        device = next(self.model.parameters()).device
        pixels = torch.stack([self.preprocess(im) for im in images]).to(device)
        with torch.no_grad():
            f = self.model.encode_image(pixels).float()
        return f / f.norm(dim=-1, keepdim=True)

    def __call__(self, reference, vocabulary: Sequence[str] | None = None) -> ZeroShotResult:
        """Classify the reference (a cut-out is seen composited onto white)."""
        from ..inpainting.reference import as_reference

        ref = as_reference(reference)
        vocab = self.vocabulary if vocabulary is None else check_vocabulary(vocabulary)
        image = ref.rgb() if ref.has_alpha else ref.image.convert("RGB")
        logits = self.model.logit_scale.exp().float() * self.image_features([image]) @ self.text_features(vocab).T
        probs = logits.softmax(dim=-1)[0].tolist()
        ranked = sorted(zip(vocab, probs), key=lambda kv: -kv[1])
        return ZeroShotResult(ranked[0][0], {c: round(float(p), 4) for c, p in ranked})


def check_vocabulary(vocabulary) -> tuple[str, ...]:
    if isinstance(vocabulary, str):
        vocabulary = [v for v in vocabulary.split(",")]
    words = tuple(" ".join(str(v).split()) for v in vocabulary)
    words = tuple(dict.fromkeys(w for w in words if w))
    if len(words) < 2:
        raise ValueError(f"a zero-shot vocabulary needs at least 2 class names, got {list(words)}")
    return words
