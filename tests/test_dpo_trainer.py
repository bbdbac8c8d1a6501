"""BoxDPOTrainer / ModelLossTrainer on a tiny LocationModel: ln 2 at step 0, gradient accumulation, references."""

import math

import pytest
import torch

from locinsert.data.synthetic import splits
from locinsert.modeling import LocationModel
from locinsert.training.config import load_stage_config
from locinsert.training.datasets import BoxDataset, PairDataset, collate, expand_pairs
from locinsert.training.dpo import BoxDPOTrainer, disable_dropout, pair_logps
from locinsert.training.runner import ModelLossTrainer
from locinsert.training.stages import precompute_reference_logps


@pytest.fixture(scope="module")
def tiny_path(tiny_model_dir):
    """A tiny random model saved and loaded back like a hub checkpoint."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def queries():
    return splits.opa_like(3, seed=0, num_bins=16)


def _pairs(model, queries, n=8):
    ds = PairDataset(queries, expand_pairs(queries, pairs_per_query=4), num_bins=model.config.num_bins,
                     preprocess=model.preprocessor)
    return torch.utils.data.Subset(ds, range(n)) if n else ds


def _args(tmp_path, stage="dpo", **kw):
    base = dict(output_dir=str(tmp_path / "out"), max_steps=1, logging_steps=1, save_strategy="no",
                report_to="none", disable_tqdm=True, seed=0, warmup_steps=0, lr_scheduler_type="constant")
    base.update(kw)
    return load_stage_config(stage, None, **base)[2]


def test_dropout_is_on_by_default_and_disabled(tiny_path):
    model = LocationModel.from_pretrained(tiny_path)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    disable_dropout(model)
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


@pytest.mark.slow
def test_first_loss_is_ln2_and_metrics_logged(tiny_path, queries, tmp_path):
    model = LocationModel.from_pretrained(tiny_path)
    args = _args(tmp_path, max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2)
    trainer = BoxDPOTrainer(model=model, args=args, train_dataset=_pairs(model, queries), data_collator=collate)
    batch = collate([trainer.train_dataset[i] for i in range(4)])
    model.train()  # dropout would make policy and reference differ here if it were still on
    assert trainer.compute_loss(model, batch).item() == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                "logps/chosen", "logps/rejected"):
        assert key in logs[0] and math.isfinite(logs[0][key])
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert logs[1]["rewards/margins"] != 0.0  # the policy moved away from the reference


@pytest.mark.slow
def test_dpo_learns_the_preference(tiny_path, queries, tmp_path):
    model = LocationModel.from_pretrained(tiny_path)
    args = _args(tmp_path, max_steps=12, per_device_train_batch_size=8, learning_rate=3e-3, beta=0.5)
    data = _pairs(model, queries, n=8)
    trainer = BoxDPOTrainer(model=model, args=args, train_dataset=data, data_collator=collate)
    trainer.train()
    model.eval()
    batch = collate([data[i] for i in range(8)])
    with torch.no_grad():
        chosen, rejected, _ = pair_logps(model, batch)
        ref_c, ref_r, _ = pair_logps(trainer.ref_model, batch)
    margin = (chosen - ref_c) - (rejected - ref_r)
    assert (margin > 0).float().mean() >= 0.75
    # the reference stayed frozen
    ref0 = LocationModel.from_pretrained(tiny_path).eval()
    with torch.no_grad():
        assert torch.allclose(pair_logps(ref0, batch)[0], ref_c, atol=1e-5)


def test_precomputed_reference_gives_the_same_loss(tiny_path, queries, tmp_path):
    model = LocationModel.from_pretrained(tiny_path)
    data = _pairs(model, queries, n=0)
    precompute_reference_logps(LocationModel.from_pretrained(tiny_path), data, batch_size=5, progress=False)
    assert data.ref_chosen_logps.shape == (len(data),)
    args = _args(tmp_path)
    with_ref = BoxDPOTrainer(model=model, args=args, train_dataset=data, data_collator=collate, ref_model=False)
    assert with_ref.ref_model is None
    # perturb the policy so that the loss is not trivially ln 2
    with torch.no_grad():
        model.lm_head.weight.add_(0.3 * torch.randn_like(model.lm_head.weight))
    batch = collate([data[i] for i in range(6)])
    loss_pre = with_ref.compute_loss(model, batch)
    copy_ref = BoxDPOTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                             ref_model=LocationModel.from_pretrained(tiny_path))
    batch_no_ref = {k: v for k, v in batch.items() if not k.startswith("ref_")}
    assert copy_ref.compute_loss(model, batch_no_ref).item() == pytest.approx(loss_pre.item(), rel=1e-5)
    assert abs(loss_pre.item() - math.log(2)) > 1e-3
    no_ref = BoxDPOTrainer(model=model, args=args, train_dataset=data, data_collator=collate, ref_model=False)
    with pytest.raises(ValueError, match="ref_model"):
        no_ref.compute_loss(model, batch_no_ref)


def test_needs_a_dpo_config(tiny_path, queries, tmp_path):
    from transformers import TrainingArguments

    model = LocationModel.from_pretrained(tiny_path)
    with pytest.raises(TypeError, match="DPOConfig"):
        BoxDPOTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path)), data_collator=collate)


def _one_step(trainer_cls, stage, tiny_path, data, tmp_path, batch, ga, **kw):
    torch.manual_seed(0)
    model = LocationModel.from_pretrained(tiny_path)
    disable_dropout(model)  # the same function of the same examples in both runs
    args = _args(tmp_path / f"ga{ga}", stage=stage, per_device_train_batch_size=batch,
                 gradient_accumulation_steps=ga, optim="sgd", learning_rate=1.0, max_grad_norm=0.0,
                 weight_decay=0.0, **kw)
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=collate)
    trainer.train()
    loss = [h for h in trainer.state.log_history if "loss" in h][0]["loss"]
    return loss, {k: (v.detach() - before[k]) for k, v in model.named_parameters() if k in before}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "dpo"])
def test_gradient_accumulation_matches_a_big_batch(stage, tiny_path, queries, tmp_path):
    probe = LocationModel.from_pretrained(tiny_path)
    if stage == "dpo":
        data, cls = _pairs(probe, queries, n=4), BoxDPOTrainer
    else:
        data = torch.utils.data.Subset(BoxDataset(queries, 16, preprocess=probe.preprocessor), range(4))
        cls = ModelLossTrainer
    # SGD with lr 1: the update is exactly minus the gradient, so a wrong GA scaling shows as a factor 2
    loss_big, step_big = _one_step(cls, stage, tiny_path, data, tmp_path, batch=4, ga=1)
    loss_acc, step_acc = _one_step(cls, stage, tiny_path, data, tmp_path, batch=2, ga=2)
    assert loss_acc == pytest.approx(loss_big, rel=1e-4)
    norm = sum(float(d.norm()) for d in step_big.values())
    assert norm > 0
    for name in step_big:
        assert torch.allclose(step_acc[name], step_big[name], atol=1e-5, rtol=1e-3), name


def test_pairs_grouped_per_image_score_like_single_pairs(tiny_path, queries):
    """k pairs of one image per example: the same log-probs and reference as one pair per example."""
    model = LocationModel.from_pretrained(tiny_path).eval()
    pairs = expand_pairs(queries, pairs_per_query=4)
    single = PairDataset(queries, pairs, num_bins=16, preprocess=model.preprocessor)
    grouped = PairDataset(queries, pairs, num_bins=16, preprocess=model.preprocessor, pairs_per_image=3)
    assert len(grouped) < len(single)
    for g, _ in grouped.index:
        assert len({queries[qi].image_id for qi, _, _ in g}) == 1
    precompute_reference_logps(model, single, batch_size=5, progress=False)
    precompute_reference_logps(model, grouped, batch_size=2, progress=False)
    assert grouped.ref_chosen_logps.shape == (len(grouped), 3)
    # each grouped pair's reference equals that pair's reference in the one-pair dataset
    key = {}
    for i, (((qi, c, r),), _) in enumerate(single.index):
        key[(qi, tuple(c.tolist()), tuple(r.tolist()))] = (single.ref_chosen_logps[i], single.ref_rejected_logps[i])
    for i, (g, _) in enumerate(grouped.index):
        for j, (qi, c, r) in enumerate(g):
            want_c, want_r = key[(qi, tuple(c.tolist()), tuple(r.tolist()))]
            assert grouped.ref_chosen_logps[i, j].item() == pytest.approx(want_c.item(), abs=1e-4)
            assert grouped.ref_rejected_logps[i, j].item() == pytest.approx(want_r.item(), abs=1e-4)
    batch = collate([grouped[0], grouped[1]])
    assert batch["chosen_tokens"].shape == (6, 4) and batch["ref_chosen_logps"].shape == (6,)
    c, r, _ = pair_logps(model, batch)
    torch.testing.assert_close(c, batch["ref_chosen_logps"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r, batch["ref_rejected_logps"], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="pairs_per_image"):
        PairDataset(queries, pairs, num_bins=16, preprocess=model.preprocessor, pairs_per_image=0)
    with pytest.raises(ValueError, match="expected"):
        grouped.with_reference(torch.zeros(len(grouped)), torch.zeros(len(grouped)))


@pytest.mark.slow
def test_dpo_trains_on_grouped_pairs(tiny_path, queries, tmp_path):
    model = LocationModel.from_pretrained(tiny_path)
    data = PairDataset(queries, expand_pairs(queries, pairs_per_query=4), num_bins=16,
                       preprocess=model.preprocessor, pairs_per_image=4)
    args = _args(tmp_path, max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2)
    trainer = BoxDPOTrainer(model=model, args=args, train_dataset=data, data_collator=collate)
    batch = collate([data[0], data[1]])
    model.train()
    assert trainer.compute_loss(model, batch).item() == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    assert trainer.state.global_step == 2
