"""Shared-prefix decoding: matches the transformers GPT-2 forward, and samples the right distribution."""

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from transformers import GPT2Config, GPT2Model

from locinsert.modeling import LocationModel, LocationModelConfig
from locinsert.modeling.sampling import SharedPrefixDecoder, _filter, decode_boxes, prefix_forward


def test_decode_steps_match_gpt2_forward():
    torch.manual_seed(0)
    gpt = GPT2Model(GPT2Config(vocab_size=11, n_embd=24, n_layer=2, n_head=3, n_positions=40)).eval()
    b, n, length = 2, 5, 7
    prefix = torch.randn(b, length, 24)
    tokens = torch.randint(0, 11, (b, n, 3))
    with torch.no_grad():
        cache = prefix_forward(gpt, prefix)
        ref_prefix = gpt(inputs_embeds=prefix).last_hidden_state
        torch.testing.assert_close(cache.last_hidden, ref_prefix[:, -1], atol=1e-5, rtol=1e-5)
        dec = SharedPrefixDecoder(gpt, cache, n)
        ours = torch.stack([dec.step(tokens[:, :, t]) for t in range(3)], 2)  # (B, N, 3, D)
        for i in range(n):
            seq = torch.cat([prefix, gpt.wte(tokens[:, i])], 1)
            ref = gpt(inputs_embeds=seq).last_hidden_state[:, length:]
            torch.testing.assert_close(ours[:, i], ref, atol=1e-5, rtol=1e-5)
    # the prefix cache is stored once per image, not per sample
    assert cache.values[0].shape == (b, 3, length, 8)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(3)
    m = LocationModel(LocationModelConfig.preset("tiny", num_bins=4)).eval()
    with torch.no_grad():  # sharpen the random head so the distribution is far from uniform
        m.lm_head.weight.mul_(40)
    return m


IMAGE = (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("region", [None, (0.0, 0.0, 30.0, 40.0)])
def test_masked_sample_frequencies_match_exact_probabilities(small_model, region):
    """The step-wise masked sampler draws from q(box), which ``score(likelihood="log_q")`` computes."""
    m = small_model
    boxes = m.tokens_to_boxes(torch.tensor(list(itertools.product(range(4), repeat=4))), 40, 40)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes = boxes[valid]
    logp = m.score(IMAGE, "dog", boxes, region=region, likelihood="log_q")
    probs = logp.exp()
    assert abs(float(probs.sum()) - 1.0) < 1e-4  # the constrained distribution is normalised
    assert probs.max() > 3 * probs[probs > 0].min()  # far from uniform: the test has teeth
    n = 6000
    s = m.sample(IMAGE, "dog", num_samples=n, region=region, sampler="masked",
                 generator=torch.Generator().manual_seed(0))
    index = {tuple(t): i for i, t in enumerate(m.boxes_to_tokens(boxes, 40, 40).tolist())}
    counts = np.bincount([index[tuple(t)] for t in s.tokens.tolist()], minlength=len(boxes))
    p = probs.double().numpy()
    support = p > 0
    assert counts[~support].sum() == 0  # nothing outside the constrained support
    tv = 0.5 * np.abs(counts / n - p).sum()
    assert tv < 0.05, tv
    expected = n * p[support]
    stat = ((counts[support] - expected) ** 2 / expected).sum()
    assert stat < chi2.ppf(0.9999, support.sum() - 1), stat
    # and the reported log q are those of the sampled boxes
    torch.testing.assert_close(s.log_q[:50], logp[[index[tuple(t)] for t in s.tokens[:50].tolist()]],
                               atol=1e-4, rtol=1e-4)


def test_top_k_one_is_greedy(small_model):
    m = small_model
    s = m.sample(IMAGE, "dog", num_samples=30, top_k=1)
    assert (s.tokens == s.tokens[0]).all()
    s2 = m.sample(IMAGE, "dog", num_samples=30, top_p=1e-6)
    assert torch.equal(s2.tokens, s.tokens)


def test_filter_keeps_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_filter(logits, 1.0, None, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(_filter(logits, 1.0, 3, None))
    assert kept.tolist() == [[True, True, True, False]]


def test_forced_decoding_scores_given_tokens():
    torch.manual_seed(1)
    gpt = GPT2Model(GPT2Config(vocab_size=9, n_embd=16, n_layer=1, n_head=2, n_positions=20)).eval()
    head = torch.nn.Linear(16, 8, bias=False)
    prefix = torch.randn(1, 5, 16)
    forced = torch.tensor([[[1, 2, 3, 4], [0, 0, 7, 7]]])
    with torch.no_grad():
        cache = prefix_forward(gpt, prefix)
        tok, lp = decode_boxes(gpt, head, cache, 2, forced=forced)[:2]
        seq = torch.cat([prefix.expand(2, -1, -1), gpt.wte(forced[0, :, :3])], 1)
        logits = head(gpt(inputs_embeds=seq).last_hidden_state[:, 4:])
        ref = torch.log_softmax(logits, -1).gather(-1, forced[0][..., None])[..., 0].sum(-1)
    assert torch.equal(tok, forced)
    torch.testing.assert_close(lp[0], ref, atol=1e-5, rtol=1e-5)


def test_resample_tends_to_the_exact_conditional(small_model):
    """Masked decoding samples q(box); resample= corrects it towards p(box | box in region)."""
    m = small_model
    from locinsert import Region

    region = Region((0.0, 0.0, 0.5, 1.0), mode="center")
    boxes = m.tokens_to_boxes(torch.tensor(list(itertools.product(range(4), repeat=4))), 40, 40)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    q = m.score(IMAGE, "dog", boxes, region=region, likelihood="log_q").exp().double().numpy()
    p = m.score(IMAGE, "dog", boxes, constrained=False).exp().double().numpy() * (q > 0)
    p /= p.sum()  # the exact conditional, by enumeration
    assert 0.5 * np.abs(p - q).sum() > 0.15  # masked decoding is off the exact conditional: the test has teeth
    index = {tuple(t): i for i, t in enumerate(m.boxes_to_tokens(boxes, 40, 40).tolist())}
    n = 4000
    s = m.sample(IMAGE, "dog", num_samples=n, region=region, resample=16, generator=torch.Generator().manual_seed(0))
    assert len(s.boxes) == n
    counts = np.bincount([index[tuple(t)] for t in s.tokens.tolist()], minlength=len(boxes))
    assert counts[p == 0].sum() == 0
    tv_exact, tv_masked = 0.5 * np.abs(counts / n - p).sum(), 0.5 * np.abs(counts / n - q).sum()
    assert tv_exact < 0.06 and tv_exact < tv_masked, (tv_exact, tv_masked)
    # reported likelihoods are still score()'s
    torch.testing.assert_close(s.log_q[:20], m.score(IMAGE, "dog", s.boxes[:20], region=region, likelihood="log_q"),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.log_p[:20], m.score(IMAGE, "dog", s.boxes[:20], region=region),
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="temperature=1"):
        m.sample(IMAGE, "dog", num_samples=4, region=region, resample=2, temperature=0.5)


def test_reusing_prefixes_encodes_each_image_and_class_once_with_the_same_results():
    """Inside model.reusing_prefixes() an (image, class) prefix is encoded once and reused by every
    call; the numbers are those of separate calls, and outside the block nothing is kept."""
    import threading

    from PIL import Image

    torch.manual_seed(0)
    m = LocationModel(LocationModelConfig.preset("tiny", num_bins=8)).eval()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    other = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    calls = []
    encode = m.encode_image
    m.encode_image = lambda pv: calls.append(pv.shape[0]) or encode(pv)

    def ask(generator_seed: int):
        g = torch.Generator().manual_seed(generator_seed)
        s = m.sample(img, "cup", num_samples=6, region="on the left", generator=g)
        mass = m.region_mass(img, "cup", "on the left", num_samples=16, generator=g)
        scored = m.score(img, "cup", s.boxes)
        box, log_p = m.refine(img, "cup", s.boxes[0])
        return s.boxes, float(mass), scored, box, log_p

    plain = ask(1)
    assert len(calls) == 4          # every call encodes
    calls.clear()
    with m.reusing_prefixes():
        reused = ask(1)
        assert len(calls) == 1      # once for the image and class
        m.score(img, "bird", s_boxes := reused[0])     # another class: encoded
        m.score(other, "cup", s_boxes)                 # another image: encoded
        with m.reusing_prefixes():                     # nested: the outer block's memo
            m.score(img, "cup", s_boxes)
        assert len(calls) == 3
        seen = []                                      # another thread has a memo of its own
        worker = threading.Thread(target=lambda: seen.append(m.score(img, "cup", s_boxes)))
        worker.start()
        worker.join()
        assert len(calls) == 4 and len(seen) == 1
    for a, b in zip(plain, reused):
        assert (a == b).all() if isinstance(a, torch.Tensor) else a == b
    m.score(img, "cup", s_boxes)
    assert len(calls) == 5          # after the block: encoded again
