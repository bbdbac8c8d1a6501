"""PowerPaint v1 (Zhuang et al., ECCV 2024) on the stock ``StableDiffusionInpaintPipeline``.

PowerPaint-v1 is Stable Diffusion inpainting fine-tuned with learned *task prompts*: ``P_obj``
(text-guided object inpainting, what insertion needs), ``P_ctxt`` (fill with context) and
``P_shape`` (follow the mask's shape), each 10 embedding vectors. Its sampler differs from stock
SD inpainting only in the text embedding, ``E = t * E(prompt_A) + (1 - t) * E(prompt_B)`` with
``t`` the "fitting degree"; so this backend computes that blend itself and passes it to the stock
pipeline as ``prompt_embeds``. No PowerPaint code is used.

Task tokens are written out in the prompt as all 10 sub-tokens (``p_obj p_obj_1 ... p_obj_9``),
looked up in the tokenizer case-insensitively. That sidesteps a transformers 5 pitfall: its
tokenizer lowercases added tokens, so diffusers' textual-inversion expansion of a capitalised
``P_obj`` silently keeps only the first of the 10 vectors.

Weights, two layouts (``PowerPaintInpainter.from_pretrained``):

- the official ``JunhaoZhuang/PowerPaint-v1`` files, ``unet/unet.safetensors`` and
  ``text_encoder/text_encoder.safetensors`` (no ``model_index.json``), applied on top of an SD
  inpainting base (``base=``, default ``stable-diffusion-v1-5/stable-diffusion-inpainting``);
  the task vectors are registered as lowercase textual-inversion tokens;
- a ready diffusers folder with the tokens already in its tokenizer, such as
  ``Sanster/PowerPaint-V1-stable-diffusion-inpainting`` (``P_obj_0 ... P_obj_9``).
"""

from __future__ import annotations

import os
import re

from ..validation import check_probability
from .base import DiffusionInpainter, load_pipeline

DEFAULT_POWERPAINT = "JunhaoZhuang/PowerPaint-v1"
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-inpainting"
TASK_TOKENS = ("p_obj", "p_ctxt", "p_shape")
#: task -> (token of prompt A, token of prompt B); the fitting degree blends A and B.
TASKS = {"object": ("p_obj", "p_obj"), "shape": ("p_shape", "p_ctxt"), "context": ("p_ctxt", "p_ctxt")}
#: v1's negative suffix for text-guided inpainting (from the PowerPaint app).
V1_NEGATIVE = "worst quality, low quality, normal quality, bad quality, blurry"

_EMBED_KEY = "text_model.embeddings.token_embedding"


def task_token_text(tokenizer, token: str) -> str:
    """All sub-tokens of a task token in order, e.g. ``"p_obj p_obj_1 ... p_obj_9"`` (case-insensitive)."""
    found = []
    for name in tokenizer.get_vocab():
        m = re.fullmatch(rf"{re.escape(token)}(?:_(\d+))?", name, flags=re.IGNORECASE)
        if m:
            found.append((-1 if m.group(1) is None else int(m.group(1)), name))
    if not found:
        raise ValueError(f"the tokenizer has no PowerPaint task token {token!r}: load PowerPaint-v1 weights "
                         "(PowerPaintInpainter.from_pretrained) or register the token first")
    return " ".join(name for _, name in sorted(found))


class PowerPaintInpainter(DiffusionInpainter):
    """``PowerPaintInpainter(pipe)``: a ``StableDiffusionInpaintPipeline`` holding PowerPaint-v1 weights.

    ``task="object"`` (text-guided, the default) uses ``P_obj`` in both prompts, so the fitting
    degree has no effect; ``task="shape"`` blends ``P_shape`` (fill the box's shape) with
    ``P_ctxt`` by ``fitting_degree`` (PowerPaint suggests 0.5-0.6 for a loose fit, 0.8-0.95 tight).
    """

    def __init__(self, pipe, *, task: str = "object", fitting_degree: float = 1.0, num_inference_steps: int = 45,
                 guidance_scale: float = 7.5, negative_prompt: str | None = "", **kwargs):
        super().__init__(pipe, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         negative_prompt=negative_prompt, **kwargs)
        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
        self.task, self.fitting_degree = task, check_probability(fitting_degree, "fitting_degree")
        self._token_text = {t: task_token_text(pipe.tokenizer, t) for t in set(TASKS[task])}

    def prompts(self, prompt: str) -> tuple[str, str, str, str]:
        """(prompt A, prompt B, negative A, negative B) with the task tokens written out."""
        a, b = (self._token_text[t] for t in TASKS[self.task])
        neg = ", ".join(p for p in (self.negative_prompt, V1_NEGATIVE) if p)
        return f"{prompt} {a}", f"{prompt} {b}", f"{neg} {a}", f"{neg} {b}"

    def embed(self, texts: list[str]):
        """CLIP text embeddings, as SD's ``encode_prompt`` computes them (no textual-inversion rewrite)."""
        import torch

        tok, enc = self.pipe.tokenizer, self.pipe.text_encoder
        ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            return enc(ids.to(enc.device))[0].to(enc.dtype)

    def encode(self, prompt: str):
        """(prompt_embeds, negative_prompt_embeds): the fitting-degree blend of prompts A and B."""
        pa, pb, na, nb = self.embed(list(self.prompts(prompt))).unbind(0)
        t = self.fitting_degree
        return (t * pa + (1 - t) * pb)[None], (t * na + (1 - t) * nb)[None]

    def generate(self, crop, prompt, generator=None):
        """Run the inpainting pipeline on the crop with PowerPaint's task-blended prompt embeddings."""
        prompt_embeds, negative_embeds = self.encode(prompt)
        w, h = crop.size
        return self.pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, image=crop.image,
                         mask_image=crop.mask, height=h, width=w, **self.common_kwargs(generator)).images[0]

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_POWERPAINT, *, base: str = DEFAULT_BASE, dtype=None,
                        device=None, pipeline_kwargs: dict | None = None, **kwargs) -> "PowerPaintInpainter":
        """Load PowerPaint-v1 from the official layout (on top of ``base``) or a converted diffusers folder."""
        from diffusers import StableDiffusionInpaintPipeline

        pkw = {"safety_checker": None, "requires_safety_checker": False, **(pipeline_kwargs or {})}
        if _find_file(model_id, "model_index.json") is not None:      # converted, ready-made pipeline
            pipe = load_pipeline(StableDiffusionInpaintPipeline, model_id, dtype=dtype, device=device, **pkw)
            return cls(pipe, **kwargs)
        unet_file = _find_file(model_id, "unet/unet.safetensors")
        text_file = _find_file(model_id, "text_encoder/text_encoder.safetensors")
        if unet_file is None or text_file is None:
            raise ValueError(f"{model_id!r} is neither a diffusers pipeline (model_index.json) nor the PowerPaint-v1 "
                             "layout (unet/unet.safetensors + text_encoder/text_encoder.safetensors)")
        pipe = load_pipeline(StableDiffusionInpaintPipeline, base, dtype=dtype, device=device, **pkw)
        apply_powerpaint_weights(pipe, unet_file, text_file)
        return cls(pipe, **kwargs)


def apply_powerpaint_weights(pipe, unet_file: str, text_encoder_file: str) -> None:
    """Load the official v1 files into an SD inpainting pipeline and register the task tokens.

    The text-encoder file holds the stock CLIP keys, except that the token embedding is stored as
    ``token_embedding.wrapped.weight`` next to ``token_embedding.trainable_embeddings.{P_ctxt,
    P_shape,P_obj}`` (10 vectors each).
    """
    from safetensors.torch import load_file

    pipe.unet.load_state_dict(load_file(unet_file), strict=True)
    tasks, state = {}, {}
    for key, value in load_file(text_encoder_file).items():
        if f"{_EMBED_KEY}.trainable_embeddings." in key:
            tasks[key.rsplit(".", 1)[-1].lower()] = value
        else:
            state[key.replace(f"{_EMBED_KEY}.wrapped.weight", f"{_EMBED_KEY}.weight")] = value
    expected = pipe.text_encoder.state_dict()
    # transformers 5's CLIPTextModel has no "text_model." prefix in its state dict; 4.x does.
    if not any(k.startswith("text_model.") for k in expected):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    for key in [k for k in state if k.endswith("position_ids") and k not in expected]:
        state.pop(key)  # saved by older transformers as a buffer; recomputed now
    pipe.text_encoder.load_state_dict(state, strict=True)
    missing = [t for t in TASK_TOKENS if t not in tasks]
    if missing:
        raise ValueError(f"{text_encoder_file} lacks the task embeddings {missing}")
    # Lowercase names: transformers 5 lowercases added tokens when tokenizing.
    pipe.load_textual_inversion([tasks[t] for t in TASK_TOKENS], token=list(TASK_TOKENS),
                                tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)


def _find_file(model_id: str, filename: str) -> str | None:
    """A file of a local folder or a hub repo, or None if that repo has no such file."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        return path if os.path.isfile(path) else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return hf_hub_download(model_id, filename)
    except RemoteEntryNotFoundError:  # offline / not cached stays an error: it says what is missing
        return None
