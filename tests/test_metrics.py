"""Background SSIM outside the box and foreground CLIP score (tiny offline CLIP)."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_diffusers import tiny_clip
from locinsert.inpainting import paste_inside
from locinsert.editing.metrics import CLIPScorer, background_ssim, foreground_clip_score


def noise(w, h, seed=0):
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def test_background_ssim_ignores_the_box_and_sees_changes_outside():
    img = noise(64, 48)
    box = (20, 10, 40, 30)
    edited = paste_inside(img, noise(20, 20, 1), box)
    assert background_ssim(img, edited, box) > 0.9999          # box content does not matter
    assert background_ssim(img, noise(64, 48, 2), box) < 0.2  # a different background does
    # A change just outside the box (beyond the SSIM margin) lowers the score.
    a = np.asarray(edited).copy()
    a[10:30, 45:52] = 0
    assert background_ssim(img, Image.fromarray(a), box) < 0.99


def test_background_ssim_bad_inputs():
    img = noise(64, 48)
    with pytest.raises(ValueError, match="64x48"):
        background_ssim(img, noise(48, 64), (1, 1, 5, 5))
    with pytest.raises(ValueError, match="no background"):
        background_ssim(img, img, (0, 0, 64, 48))
    with pytest.raises(ValueError, match="outside"):
        background_ssim(img, img, (0, 0, 65, 48))
    with pytest.raises(ValueError, match="win_size"):
        background_ssim(img, img, (1, 1, 5, 5), win_size=4)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip")
    tiny_clip(str(path))
    return str(path)


def test_clip_score_from_pretrained_matches_manual_cosine(clip_dir):
    scorer = CLIPScorer.from_pretrained(clip_dir)
    img = noise(64, 48)
    s = scorer(img, (8, 8, 40, 40), "red mug")
    assert -1.0 <= s <= 1.0
    model, processor = scorer.model, scorer.processor
    inputs = processor(text=["a photo of a red mug"], images=img.crop((8, 8, 40, 40)), return_tensors="pt",
                       padding=True)
    with torch.no_grad():
        out = model(**inputs)
    i = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
    t = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
    assert s == pytest.approx(float((i * t).sum()), abs=1e-5)
    # Same number through the functional form, with a model + processor or a path.
    assert foreground_clip_score(img, (8, 8, 40, 40), "red mug", model=model, processor=processor) == pytest.approx(s)
    assert foreground_clip_score(img, (8, 8, 40, 40), "red mug", model=clip_dir) == pytest.approx(s, abs=1e-5)
    # It looks at the crop: another box gives another score.
    assert scorer(img, (40, 20, 64, 48), "red mug") != pytest.approx(s, abs=1e-6)


def test_clip_score_bad_inputs(clip_dir):
    scorer = CLIPScorer.from_pretrained(clip_dir)
    with pytest.raises(ValueError, match="text is empty"):
        scorer(noise(32, 32), (0, 0, 10, 10), " ")
    with pytest.raises(ValueError, match="degenerate"):
        scorer(noise(32, 32), (5, 5, 5, 10), "cup")
    with pytest.raises(ValueError, match="processor"):
        foreground_clip_score(noise(32, 32), (0, 0, 10, 10), "cup", model=scorer.model)
