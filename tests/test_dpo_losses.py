"""DPO loss variants against hand-computed values."""

import math

import pytest
import torch

from locinsert.training.losses import check_loss_types, dpo_loss, preference_loss

LN2 = math.log(2)


def _pair(d: float):
    """Log-probs whose DPO difference d = (pc - rc) - (pr - rr) is ``d``."""
    pc, rc = torch.tensor([-3.0 + d]), torch.tensor([-3.0])
    pr, rr = torch.tensor([-5.0]), torch.tensor([-5.0])
    return pc, pr, rc, rr


@pytest.mark.parametrize("loss_type,beta,d,expected", [
    ("sigmoid", 0.1, 0.0, LN2),
    ("sigmoid", 0.1, 10.0, math.log1p(math.exp(-1.0))),        # -log sigma(1)
    ("sigmoid", 0.5, -2.0, math.log1p(math.exp(1.0))),         # -log sigma(-1)
    ("hinge", 0.1, 0.0, 1.0),
    ("hinge", 0.1, 5.0, 0.5),
    ("hinge", 0.1, 20.0, 0.0),
    ("ipo", 0.1, 0.0, 25.0),                                   # (0 - 1/0.2)^2
    ("ipo", 0.5, 4.0, 0.0),                                    # (4/4 - 1)^2
    ("ipo", 0.5, 8.0, 1.0),                                    # (8/4 - 1)^2
])
def test_hand_computed(loss_type, beta, d, expected):
    loss = dpo_loss(*_pair(d), beta=beta, loss_type=loss_type)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_robust():
    # e = 0 is plain DPO; at d = 0 every e gives ln 2; elsewhere the hand-written formula
    for d in (-3.0, 0.0, 7.0):
        assert dpo_loss(*_pair(d), loss_type="robust", label_smoothing=0.0).item() == \
            pytest.approx(dpo_loss(*_pair(d), loss_type="sigmoid").item(), rel=1e-6)
    assert dpo_loss(*_pair(0.0), loss_type="robust", label_smoothing=0.2).item() == pytest.approx(LN2, rel=1e-6)
    e, bd = 0.2, 0.1 * 7.0
    ls = lambda x: -math.log1p(math.exp(-x))  # noqa: E731  (log sigma)
    expected = (-(1 - e) * ls(bd) + e * ls(-bd)) / (1 - 2 * e)
    assert dpo_loss(*_pair(7.0), loss_type="robust", label_smoothing=e).item() == pytest.approx(expected, rel=1e-5)


def test_sft_term_and_weights():
    pc = torch.tensor([-4.0, -8.0], requires_grad=True)
    pr, rc, rr = torch.tensor([-6.0, -6.0]), torch.tensor([-4.0, -8.0]), torch.tensor([-6.0, -6.0])
    out = preference_loss(pc, pr, rc, rr, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    # d = 0 for both pairs: ln 2; SFT = mean token NLL of the chosen boxes = mean(4, 8) / 4 = 1.5
    assert out.loss.item() == pytest.approx(LN2 + 0.5 * 1.5, rel=1e-6)
    out.loss.backward()
    # d/dpc of -log sigma(beta d) at d=0 is -beta/2 per pair / 2 pairs; SFT adds -0.5/(4*2)
    assert pc.grad.tolist() == pytest.approx([-0.1 / 2 / 2 - 0.5 / 8] * 2, rel=1e-5)


def test_gradient_prefers_chosen():
    pc = torch.zeros(3, requires_grad=True)
    pr = torch.zeros(3, requires_grad=True)
    for loss_type in ("sigmoid", "hinge", "ipo", "robust"):
        pc.grad = pr.grad = None
        loss = dpo_loss(pc, pr, torch.zeros(3), torch.zeros(3), loss_type=loss_type, label_smoothing=0.1).mean()
        loss.backward()
        assert (pc.grad < 0).all() and (pr.grad > 0).all(), loss_type  # descent raises chosen, lowers rejected


def test_metrics():
    pc, pr = torch.tensor([-1.0, -5.0]), torch.tensor([-4.0, -2.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    m = preference_loss(pc, pr, rc, rr, beta=0.5).metrics
    assert m["rewards/chosen"].item() == pytest.approx(0.5 * ((1.0) + (-3.0)) / 2)
    assert m["rewards/rejected"].item() == pytest.approx(0.5 * ((-2.0) + 0.0) / 2)
    assert m["rewards/margins"].item() == pytest.approx(m["rewards/chosen"].item() - m["rewards/rejected"].item())
    assert m["rewards/accuracies"].item() == pytest.approx(0.5)
    assert m["logps/chosen"].item() == pytest.approx(-3.0)
    assert m["logps/rejected"].item() == pytest.approx(-3.0)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(loss_type="kto"), "unsupported"),
    (dict(loss_type=["sft"]), "no preference term"),
    (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0]), "loss_weights"),
    (dict(loss_type="robust", label_smoothing=0.5), "label_smoothing"),
    (dict(loss_type="sigmoid", beta=0.0), "beta"),
    (dict(loss_type=[]), "empty"),
])
def test_bad_specs(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        check_loss_types(**kwargs)
