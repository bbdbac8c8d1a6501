"""Shared-prefix decoding for a GPT-2 decoder, and the constrained box sampler.

All N samples of one image share the image + class prefix. The prefix runs once and its keys and
values are kept once per image. At each decode step the N samples are folded into the query-length
dimension, so attention over the prefix is one (H, N, d) x (H, d, L) matmul against the single
cache, a plain GEMM, instead of N copies of the cache. Attention over each sample's own
(at most 3) generated tokens is a small per-sample einsum; both parts share one softmax.

The functions reuse the GPT-2 block weights of a ``transformers.GPT2Model`` (ln_1, c_attn, c_proj,
ln_2, mlp, ln_f) and match its forward pass numerically (tests/test_sampling.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

NUM_COORDS = 4


@dataclass
class PrefixCache:
    """Per-layer keys (B, H, d, L) (already transposed for the matmul) and values (B, H, L, d)."""

    keys_t: list
    values: list
    last_hidden: torch.Tensor  # (B, D): final hidden state (after ln_f) at the last prefix position

    @property
    def length(self) -> int:
        return self.values[0].shape[2]


def _check_gpt2(decoder) -> None:
    cfg = decoder.config
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(cfg, "add_cross_attention", False):
        raise ValueError("shared-prefix decoding supports plain GPT-2 blocks only")


def _split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(..., T, D) -> (..., H, T, d)."""
    *lead, t, dim = x.shape
    return x.view(*lead, t, n_head, dim // n_head).transpose(-2, -3)


def prefix_forward(decoder, embeds: torch.Tensor) -> PrefixCache:
    """Run the prefix (B, L, D) once through the GPT-2 blocks; keep keys/values per layer."""
    _check_gpt2(decoder)
    n_head = decoder.config.n_head
    length = embeds.shape[1]
    x = embeds + decoder.wpe.weight[:length]
    keys_t, values = [], []
    for block in decoder.h:
        h = block.ln_1(x)
        q, k, v = block.attn.c_attn(h).split(x.shape[-1], dim=-1)
        q, k, v = (_split_heads(t, n_head) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + block.attn.c_proj(a.transpose(1, 2).reshape(x.shape))
        x = x + block.mlp(block.ln_2(x))
        keys_t.append(k.transpose(-1, -2).contiguous())
        values.append(v.contiguous())
    return PrefixCache(keys_t, values, decoder.ln_f(x[:, -1]))


def shared_prefix_forward(decoder, shared: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
    """Teacher-forced GPT-2 forward of k tails per shared prefix, differentiable (training).

    ``shared`` (B, L, D): embeddings every tail of an image shares (the image tokens); ``tails``
    (k * B, S, D), k blocks of B rows (row j * B + b continues prefix b). Equals the plain forward of
    each ``[shared_b, tail]`` sequence (tests/test_model.py), but the shared tokens run through the
    blocks once per image instead of k times: with 17 image tokens and 5-token tails, a step of
    k = 4 boxes per image costs about a third of four separate sequences. Returns the tails' final
    hidden states (k * B, S, D) after ln_f. Dropout follows GPT-2's (embeddings, attention, residuals).
    """
    _check_gpt2(decoder)
    b, length, dim = shared.shape
    s = tails.shape[1]
    if tails.shape[0] % b or tails.shape[2] != dim:
        raise ValueError(f"tails {tuple(tails.shape)} do not continue {b} prefixes of width {dim}")
    k = tails.shape[0] // b
    n_head = decoder.config.n_head
    head_dim = dim // n_head
    scale = 1.0 / math.sqrt(head_dim) if getattr(decoder.config, "scale_attn_weights", True) else 1.0
    x = decoder.drop(shared + decoder.wpe.weight[:length])
    y = decoder.drop(tails + decoder.wpe.weight[length:length + s])
    future = torch.ones(s, s, dtype=torch.bool, device=y.device).triu(1)
    last = len(decoder.h) - 1
    for i, block in enumerate(decoder.h):
        attn = block.attn
        p_drop = attn.attn_dropout.p if block.training else 0.0
        q, key, value = (_split_heads(t, n_head) for t in attn.c_attn(block.ln_1(x)).split(dim, dim=-1))
        if i < last:  # the last block's shared outputs are never read: only its keys and values are
            a = F.scaled_dot_product_attention(q, key, value, is_causal=True, dropout_p=p_drop)
            x = x + attn.resid_dropout(attn.c_proj(a.transpose(1, 2).reshape(x.shape)))
            x = x + block.mlp(block.ln_2(x))
        # tails: (k, B, H, S, d) against the shared keys (B, H, L, d) by broadcasting, plus their own
        qt, kt, vt = (t.view(k, b, s, n_head, head_dim).transpose(2, 3)
                      for t in attn.c_attn(block.ln_1(y)).split(dim, dim=-1))
        s_shared = torch.matmul(qt, key.transpose(-1, -2)) * scale               # (k, B, H, S, L)
        s_own = (torch.matmul(qt, kt.transpose(-1, -2)) * scale).masked_fill(future, float("-inf"))
        p = attn.attn_dropout(torch.softmax(torch.cat([s_shared, s_own], -1), -1))
        a = torch.matmul(p[..., :length], value) + torch.matmul(p[..., length:], vt)  # (k, B, H, S, d)
        y = y + attn.resid_dropout(attn.c_proj(a.transpose(2, 3).reshape(y.shape)))
        y = y + block.mlp(block.ln_2(y))
    return decoder.ln_f(y)


def decode_step(decoder, tokens: torch.Tensor, position: int, keys_t: list, values: list, own_k: tuple,
                own_v: tuple, scale: float) -> tuple[torch.Tensor, tuple, tuple]:
    """One decode step of N samples per prefix, as a pure function (so that it can be compiled).

    ``tokens`` (B, N) long at absolute ``position``; ``keys_t`` / ``values``: the shared prefix cache
    (``PrefixCache``); ``own_k`` / ``own_v``: per layer, the samples' own keys/values so far,
    (B, N, H, t, d). Returns the final hidden states (B, N, D) after ln_f and the own keys/values
    with this step's appended, (B, N, H, t + 1, d).
    """
    b, n = tokens.shape
    dim = decoder.config.n_embd
    n_head = decoder.config.n_head
    head_dim = dim // n_head
    x = decoder.wte(tokens) + decoder.wpe.weight[position]
    new_k, new_v = [], []
    for i, block in enumerate(decoder.h):
        h = block.ln_1(x)
        q, k, v = block.attn.c_attn(h).split(dim, dim=-1)
        q = q.view(b, n, n_head, head_dim) * scale
        ok = torch.cat([own_k[i], k.view(b, n, n_head, 1, head_dim)], 3)
        ov = torch.cat([own_v[i], v.view(b, n, n_head, 1, head_dim)], 3)
        s_prefix = torch.matmul(q.transpose(1, 2), keys_t[i])                # (B, H, N, L): one GEMM
        s_own = (q[:, :, :, None] * ok).sum(-1).permute(0, 2, 1, 3)         # (B, H, N, t+1)
        p = torch.softmax(torch.cat([s_prefix, s_own], -1), -1)
        length = s_prefix.shape[-1]
        a = torch.matmul(p[..., :length], values[i]).transpose(1, 2)         # (B, N, H, d)
        a = a + (p[..., length:].permute(0, 2, 1, 3)[..., None] * ov).sum(3)
        x = x + block.attn.c_proj(a.reshape(b, n, dim))
        x = x + block.mlp(block.ln_2(x))
        new_k.append(ok)
        new_v.append(ov)
    return decoder.ln_f(x), tuple(new_k), tuple(new_v)


#: ``mode`` values of :func:`compiled_decode_step` (and ``LocationModel.compile_decoding``):
#: "none" (eager), torch.compile's modes "default" / "reduce-overhead" (Inductor; the latter adds
#: CUDA graphs on a GPU) / "max-autotune", and "cudagraphs" (CUDA graphs without Inductor: cheap
#: to compile, GPU only).
DECODE_COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "cudagraphs")
_COMPILED: dict = {}


def compiled_decode_step(mode: str = "reduce-overhead"):
    """:func:`decode_step` compiled with ``torch.compile`` in ``mode`` (one compiled function per mode).

    On a GPU a decode step of the ``base`` shapes is a few hundred small kernels: launch-bound at
    small N. CUDA graphs replay them as one launch; whether that pays is measured by
    ``locinsert bench sampling --compile MODE``, not assumed.
    """
    if mode not in DECODE_COMPILE_MODES:
        raise ValueError(f"decode compile mode must be one of {', '.join(DECODE_COMPILE_MODES)}, got {mode!r}")
    if mode == "none":
        return decode_step
    if mode not in _COMPILED:
        kwargs = dict(backend="cudagraphs") if mode == "cudagraphs" else dict(mode=mode)
        _COMPILED[mode] = torch.compile(decode_step, **kwargs)
    return _COMPILED[mode]


class SharedPrefixDecoder:
    """Decode N continuations per prefix; ``step(tokens)`` feeds one token per sample.

    The samples' own keys/values grow by one position per step; the prefix cache is read by
    broadcasting and never copied. ``step_fn`` is :func:`decode_step` or a compiled version of it.
    """

    def __init__(self, decoder, cache: PrefixCache, num_samples: int, step_fn=None):
        self.decoder, self.cache = decoder, cache
        cfg = decoder.config
        head_dim = cfg.n_embd // cfg.n_head
        b = cache.values[0].shape[0]
        self.t = 0
        self.step_fn = step_fn or decode_step
        empty = cache.values[0].new_empty((b, num_samples, cfg.n_head, 0, head_dim))
        self.own_k = self.own_v = tuple(empty for _ in decoder.h)
        self.scale = 1.0 / math.sqrt(head_dim) if getattr(cfg, "scale_attn_weights", True) else 1.0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) long -> final hidden states (B, N, D) after ln_f."""
        hidden, self.own_k, self.own_v = self.step_fn(self.decoder, tokens, self.cache.length + self.t,
                                                      self.cache.keys_t, self.cache.values, self.own_k,
                                                      self.own_v, self.scale)
        self.t += 1
        return hidden


# -- sampling ----------------------------------------------------------------------------------

def _filter(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering on masked logits (-inf = banned)."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class Decoded(NamedTuple):
    """What :func:`decode_boxes` returns (all per image ``B`` and row ``N``).

    ``tokens`` (B, N, 4); ``log_q`` (B, N): the boxes' log-probability under the step-wise masked
    model at temperature 1 (what ``score(likelihood="log_q")`` computes), -inf for a forced box that
    breaks a constraint; ``dead`` (B, N) bool: rows whose mask emptied (inexact constraints);
    ``log_p`` (B, N): the same boxes' log-probability under the model itself, no masks;
    ``log_w`` (B, N): each row's log importance weight, so that ``exp(log_w).mean(1)`` estimates the
    mass the constraints keep, P(box satisfies them) (``None`` when forced or filtered).
    """

    tokens: torch.Tensor
    log_q: torch.Tensor
    dead: torch.Tensor
    log_p: torch.Tensor
    log_w: torch.Tensor | None


#: ``decode_boxes``' samplers: "masked" draws from the step-wise renormalised q(box); "lookahead"
#: draws x1 from its exact one-step lookahead and the rest masked (importance weights carry the
#: difference); "smc" is "lookahead" (where cheap) plus resampling the rows by their next
#: coordinate's allowed mass before x2 and y2 (sequential Monte Carlo; before y1 too without the
#: lookahead), so that the boxes follow p(box | region).
DECODE_SAMPLERS = ("masked", "lookahead", "smc")
#: "smc" looks ahead on x1 (one decode row per bin) when the bins are at most this many, or at most
#: twice the samples: below that the lookahead costs little next to the samples' own decode rows.
LOOKAHEAD_FREE_ROWS = 64


def lookahead_is_cheap(num_bins: int, num_samples: int) -> bool:
    """Whether "smc" looks ahead on x1 (see :data:`LOOKAHEAD_FREE_ROWS`)."""
    return num_bins <= max(2 * num_samples, LOOKAHEAD_FREE_ROWS)


def _systematic(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(B, N) non-negative weights -> (B, N) row indices drawn by systematic resampling per image.

    An image whose weights are all zero keeps its rows (the caller marks them dead).
    """
    b, n = weights.shape
    total = weights.sum(1, keepdim=True)
    w = torch.where(total > 0, weights / total.clamp(min=1e-300), torch.full_like(weights, 1.0 / n))
    dev = generator.device if generator is not None else w.device
    u = torch.rand(b, 1, generator=generator, device=dev, dtype=torch.float64).to(w.device)
    positions = (torch.arange(n, device=w.device, dtype=torch.float64)[None] + u) / n
    cdf = w.double().cumsum(1)
    cdf[:, -1] = 1.0 + 1e-12
    return torch.searchsorted(cdf, positions).clamp(max=n - 1)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (B, M) of ``x`` (B, N, ...) per image."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], index.to(x.device)]


def decode_boxes(decoder, lm_head, cache: PrefixCache, num_samples: int, allowed_fn=None, *,
                 forced: torch.Tensor | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None, step_fn=None,
                 sampler: str = "masked") -> Decoded:
    """Sample (or score, with ``forced``) 4 coordinate tokens for each of N rows per prefix.

    ``allowed_fn(step, prefix (B, N, step)) -> (B, N, V) bool`` gives the constraint masks.
    ``sampler`` (see :data:`DECODE_SAMPLERS`) only matters with ``allowed_fn`` and without
    ``forced``. The exact lookahead on x1 runs all V candidate x1 tokens through one decode step
    (V rows, shared by every sample) and reads, for each, the mass its y1 mask keeps; the samples
    then copy that step's state instead of computing it, so it costs V rows once instead of N.
    With "smc", before x2 and before y2 every image's rows are resampled (systematically) in
    proportion to the mass their next mask keeps, which is the incremental importance weight of
    p(box | constraints) against the masked proposal; the survivors carry equal weights.
    The weights use the temperature-scaled distribution, so the target is the tempered model under
    the constraints; top-k/top-p filter after masking and make the result approximate.
    ``step_fn``: the decode step (:func:`decode_step`, or :func:`compiled_decode_step`'s result).
    """
    if sampler not in DECODE_SAMPLERS:
        raise ValueError(f"sampler must be one of {DECODE_SAMPLERS}, got {sampler!r}")
    b, n = cache.values[0].shape[0], num_samples
    device = cache.values[0].device
    tokens = torch.zeros(b, n, NUM_COORDS, dtype=torch.long, device=device)
    log_q = torch.zeros(b, n, device=device)
    log_p = torch.zeros(b, n, device=device)
    dead = torch.zeros(b, n, dtype=torch.bool, device=device)
    weighted = forced is None and top_k is None and top_p is None and temperature == 1.0
    log_w = torch.zeros(b, n, device=device, dtype=torch.float64) if weighted else None
    guided = allowed_fn is not None and forced is None and sampler != "masked"
    v = lm_head.out_features
    # The x1 lookahead decodes one row per bin; SMC uses it only where that is cheap next to the
    # samples' own rows, and otherwise resamples before y1 too.
    lookahead = guided and (sampler == "lookahead" or lookahead_is_cheap(v, n))
    if step_fn is not None and step_fn is not decode_step:
        torch.compiler.cudagraph_mark_step_begin()  # a new decode: earlier CUDA-graph outputs are dead
    stepper = SharedPrefixDecoder(decoder, cache, n, step_fn)
    hidden = cache.last_hidden[:, None, :]  # (B, 1, D): x1 depends on the prefix only
    look_logits = None
    for step in range(NUM_COORDS):
        if step == 1 and look_logits is not None:
            logits = _take(look_logits, tokens[:, :, 0])
        else:
            logits = lm_head(hidden).float()
            logits = logits.expand(b, n, logits.shape[-1]) if logits.shape[1] == 1 else logits
        raw_all = torch.log_softmax(logits, -1)
        ok = None
        if allowed_fn is not None:
            ok = allowed_fn(step, tokens[:, :, :step]).to(device)
        if lookahead and step == 0:
            # exact one-step lookahead: every x1 token through one decode step, shared by all rows
            look = SharedPrefixDecoder(decoder, cache, v, step_fn)
            every = torch.arange(v, device=device)[None].expand(b, v)
            look_hidden = look.step(every)                                      # (B, V, D)
            look_logits = lm_head(look_hidden).float()                          # (B, V, V)
            ok1 = allowed_fn(1, every[..., None]).to(device)                    # (B, V, V)
            kept1 = (torch.softmax(look_logits / temperature, -1) * ok1).sum(-1)  # (B, V)
            first = torch.softmax(logits[:, :1] / temperature, -1)[:, 0] * ok[:, 0]  # (B, V)
            joint = first * kept1
            mass0 = joint.sum(-1)                                               # (B,)
            empty = mass0 <= 0
            dead |= empty[:, None]
            probs = torch.where(empty[:, None], ok[:, 0].float(), joint)
            probs = probs / probs.sum(-1, keepdim=True)
            flat = probs[:, None].expand(b, n, v).reshape(b * n, v)
            if generator is not None and generator.device != flat.device:
                flat = flat.to(generator.device)
            tok = torch.multinomial(flat, 1, generator=generator).view(b, n).to(device)
            masked = logits.masked_fill(~ok, float("-inf"))
            tokens[:, :, 0] = tok
            log_q += torch.log_softmax(masked, -1).gather(-1, tok[..., None])[..., 0]
            log_p += raw_all.gather(-1, tok[..., None])[..., 0]
            if log_w is not None:
                log_w += mass0.double().clamp(min=1e-300).log()[:, None]
            # the rows take their x1's decode state from the lookahead instead of recomputing it
            stepper.own_k = tuple(_take(k, tok) for k in look.own_k)
            stepper.own_v = tuple(_take(x, tok) for x in look.own_v)
            stepper.t = 1
            continue
        if ok is not None:
            kept = (torch.softmax(logits / temperature, -1) * ok).sum(-1)   # (B, N): mass the mask keeps
            if lookahead and step == 1:
                pass  # y1's kept mass is already in x1's lookahead weight
            elif sampler == "smc" and guided:
                idx = _systematic(kept.double(), generator)
                if log_w is not None:  # every row of an image carries the same weight here
                    log_w = (log_w[:, :1] + kept.double().mean(1, keepdim=True).clamp(min=1e-300).log()
                             ).expand(b, n).clone()
                dead |= (kept.sum(1) <= 0)[:, None]
                tokens, log_q, log_p, dead = (_take(x, idx) for x in (tokens, log_q, log_p, dead))
                logits, raw_all, ok = _take(logits, idx), _take(raw_all, idx), _take(ok, idx)
                stepper.own_k = tuple(_take(k, idx) for k in stepper.own_k)
                stepper.own_v = tuple(_take(x, idx) for x in stepper.own_v)
            elif log_w is not None:
                log_w += kept.double().clamp(min=1e-300).log()
            empty = ~ok.any(-1)
            dead |= empty
            ok = ok | empty[..., None]  # keep dead rows numerically alive; they are redrawn later
            logits = logits.masked_fill(~ok, float("-inf"))
        logp_all = torch.log_softmax(logits, -1)
        if forced is not None:
            tok = forced[:, :, step]
        else:
            probs = torch.softmax(_filter(logits, temperature, top_k, top_p), -1)
            flat = probs.reshape(b * n, -1)
            if generator is not None and generator.device != flat.device:  # e.g. a CPU generator, GPU model
                flat = flat.to(generator.device)
            tok = torch.multinomial(flat, 1, generator=generator).view(b, n).to(device)
        tokens[:, :, step] = tok
        log_q += logp_all.gather(-1, tok[..., None])[..., 0]
        log_p += raw_all.gather(-1, tok[..., None])[..., 0]
        if step < NUM_COORDS - 1:
            hidden = stepper.step(tok)
    if log_w is not None:
        log_w = log_w.masked_fill(dead, float("-inf"))
    return Decoded(tokens, log_q, dead, log_p, log_w)
