"""Tiny random diffusers / transformers components, built offline in memory (for tests).

Shapes follow diffusers' and transformers' own fast tests; the CLIP tokenizer is written from the
256-symbol byte-level alphabet and the T5 tokenizer from printable ASCII, so nothing touches the hub.
Every builder seeds torch, so two calls give the same weights.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

SD_TEXT = dict(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
               num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000)


def tiny_clip_tokenizer():
    """A CLIP BPE tokenizer with full byte-level coverage and no merges (514 ids)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [a + "</w>" for a in alphabet]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump({t: i for i, t in enumerate(vocab)}, f)
        with open(os.path.join(d, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
        # Pipelines pad to model_max_length: without 77 it would be ~1e30.
        return CLIPTokenizer.from_pretrained(d, model_max_length=77)


def tiny_text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**SD_TEXT)).eval()


def tiny_vae(sample_size: int | None = None):
    """vae_scale_factor = 2."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    kw = dict(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
              down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    return AutoencoderKL(**kw, **({"sample_size": sample_size} if sample_size else {}))


def tiny_unet(in_channels: int = 9, attention_type: str = "default", seed: int = 0):
    """Native output 32 * 2 = 64 px."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=in_channels, out_channels=4,
        cross_attention_dim=32, attention_type=attention_type, norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))


def tiny_sd_inpaint():
    """A real ``StableDiffusionInpaintPipeline`` (9-channel UNet), 64 px native."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tiny_clip_tokenizer(), unet=tiny_unet(9),
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_gligen():
    """A real ``StableDiffusionGLIGENPipeline`` for inpainting; ``vae.sample_size`` = output size = 64."""
    from diffusers import DDIMScheduler, StableDiffusionGLIGENPipeline

    pipe = StableDiffusionGLIGENPipeline(
        vae=tiny_vae(sample_size=64), text_encoder=tiny_text_encoder(), tokenizer=tiny_clip_tokenizer(),
        unet=tiny_unet(9, "gated"),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                clip_sample=False, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer over printable ASCII, with and without the word-start marker."""
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(32, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + c, -1.0) for c in chars] + [(c, -2.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_flux_fill():
    """A real ``FluxFillPipeline``: 1-block transformer, 1-level VAE (vae_scale_factor 1, grid multiple 2)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    latent = 1
    torch.manual_seed(0)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=latent, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    # Transformer input = packed noisy latents (4c) + packed masked-image latents (4c) + packed mask (4 * 1 * 1).
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=latent * 8 + 4, out_channels=latent * 4,
                                         num_layers=1, num_single_layers=1, attention_head_dim=16,
                                         num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                         axes_dims_rope=[4, 4, 8])
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=256, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    pipe = FluxFillPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=tiny_text_encoder(),
                            tokenizer=tiny_clip_tokenizer(), text_encoder_2=text_encoder_2,
                            tokenizer_2=tiny_t5_tokenizer(), transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_clip(path: str | None = None):
    """A tiny ``CLIPModel`` + ``CLIPProcessor``; saved to ``path`` when given (to test from_pretrained)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=32, projection_dim=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=37, max_position_embeddings=77,
                         bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(image_size=30, patch_size=6, num_channels=3, hidden_size=32, projection_dim=32,
                           num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        projection_dim=32)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 30},
                                                                 crop_size={"height": 30, "width": 30}),
                              tokenizer=tiny_clip_tokenizer())
    if path is not None:
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return model, processor


def tiny_paint_by_example():
    """A real ``PaintByExamplePipeline`` (diffusers' deprecated exemplar inpainting), 64 px native.

    Recipe of diffusers' own (deleted) fast test: a 5-layer CLIP vision tower, so the mapper has
    (5 + 1) // 5 = 1 transformer block; ``proj_size`` = the UNet's ``cross_attention_dim``.
    """
    import importlib
    import warnings

    from diffusers import PaintByExamplePipeline, PNDMScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig

    encoder_cls = importlib.import_module(PaintByExamplePipeline.__module__.rsplit(".", 1)[0]).PaintByExampleImageEncoder
    torch.manual_seed(0)
    encoder = encoder_cls(CLIPVisionConfig(hidden_size=32, projection_dim=32, intermediate_size=37,
                                           layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5,
                                           image_size=32, patch_size=4), proj_size=32).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "deprecated pipeline" notice
        pipe = PaintByExamplePipeline(vae=tiny_vae(), image_encoder=encoder, unet=tiny_unet(9, seed=1),
                                      scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
                                      feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
                                      requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


TINY_OPEN_CLIP = dict(embed_dim=24, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
                      text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))


def tiny_open_clip(path: str):
    """A tiny random open_clip ``CLIP`` saved as ``local-dir:`` reads it (config + safetensors); returns the model."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    clip = CLIP(**TINY_OPEN_CLIP).eval()
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {}}, f)
    save_file(clip.state_dict(), os.path.join(path, "open_clip_model.safetensors"))
    return clip
