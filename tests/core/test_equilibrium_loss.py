import pytest
import torch
import torch.nn.functional as F

from loce_cli.core import equilibrium_loss as ebl_module
from loce_cli.core.equilibrium_loss import equilibrium_loss


@pytest.fixture(autouse=True, params=["inplace", "builtin"])
def backward(request, monkeypatch):
    """Every test runs with both implementations (the CPU's in-place backward, the GPU's built-in one)."""
    monkeypatch.setattr(ebl_module, "BACKWARD", request.param)
    return request.param


def _direct(logits, labels, s):
    """The paper's form: -log(s_y e^{z_y} / sum_j s_j e^{z_j}), computed naively in float64."""
    num = s[labels] * torch.exp(logits.gather(1, labels[:, None]).squeeze(1))
    den = (s[None, :] * torch.exp(logits)).sum(1)
    return -torch.log(num / den)


def test_equals_direct_formula_and_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 11, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 11, (50,), generator=g)
    s = torch.rand(11, generator=g, dtype=torch.float64) * 0.9 + 0.01
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    la = equilibrium_loss(a, labels, s, reduction="none")
    lb = _direct(b, labels, s)
    assert torch.allclose(la, lb, atol=1e-10)
    la.sum().backward()
    lb.sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_equal_scores_give_plain_cross_entropy():
    logits = torch.randn(20, 6)
    labels = torch.randint(0, 6, (20,))
    s = torch.full((6,), 0.3)
    assert torch.allclose(equilibrium_loss(logits, labels, s), F.cross_entropy(logits, labels), atol=1e-6)


def test_weak_class_gets_larger_margin():
    logits = torch.zeros(1, 3)
    strong = equilibrium_loss(logits, torch.tensor([0]), torch.tensor([0.9, 0.1, 0.5]))
    weak = equilibrium_loss(logits, torch.tensor([1]), torch.tensor([0.9, 0.1, 0.5]))
    assert weak > strong


def test_stable_for_extreme_values_and_zero_scores():
    logits = torch.tensor([[1000.0, -1000.0, 0.0]])
    loss = equilibrium_loss(logits, torch.tensor([1]), torch.tensor([0.0, 1.0, 1.0]))
    assert torch.isfinite(loss)


def test_reductions_weight_and_avg_factor():
    logits = torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 4])
    s = torch.rand(5) + 0.1
    none = equilibrium_loss(logits, labels, s, reduction="none")
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    assert torch.allclose(equilibrium_loss(logits, labels, s, weight=w, reduction="sum"), (none * w).sum())
    assert torch.allclose(equilibrium_loss(logits, labels, s, weight=w, avg_factor=2.0), (none * w).sum() / 2)
    assert torch.allclose(equilibrium_loss(logits, labels, s), none.mean())
    assert equilibrium_loss(logits[:0], labels[:0], s) == 0
    with pytest.raises(ValueError):
        equilibrium_loss(logits, labels, s[:3])


def test_no_gradient_into_scores():
    s = torch.rand(4, requires_grad=True)
    equilibrium_loss(torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 3]), s).backward()
    assert s.grad is None


def test_both_backwards_agree_with_weights_and_avg_factor():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 9, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 9, (40,), generator=g)
    s = torch.rand(9, generator=g, dtype=torch.float64) + 0.01
    w = torch.rand(40, generator=g, dtype=torch.float64)
    out = {}
    for mode in ("inplace", "builtin"):
        ebl_module.BACKWARD = mode
        for red, kw in (("mean", {}), ("mean", dict(weight=w, avg_factor=17.0)), ("sum", dict(weight=w))):
            z = logits.clone().requires_grad_(True)
            loss = equilibrium_loss(z, labels, s, reduction=red, **kw)
            loss.backward()
            out.setdefault((red, bool(kw)), []).append((loss.detach(), z.grad))
    for (l1, g1), (l2, g2) in out.values():
        torch.testing.assert_close(l1, l2)
        torch.testing.assert_close(g1, g2)


@pytest.mark.gpu
def test_cuda_default_matches_the_cpu(backward, monkeypatch):
    monkeypatch.setattr(ebl_module, "BACKWARD", "auto")  # the device picks: in-place on the CPU, built-in on CUDA
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(64, 21, generator=g)
    labels = torch.randint(0, 21, (64,), generator=g)
    s = torch.rand(21, generator=g) + 0.01
    w = torch.rand(64, generator=g)
    res = []
    for dev in ("cpu", "cuda"):
        z = logits.to(dev).clone().requires_grad_(True)  # a fresh leaf on each device
        loss = equilibrium_loss(z, labels.to(dev), s.to(dev), weight=w.to(dev), avg_factor=torch.tensor(30.0))
        loss.backward()
        res.append((loss.detach().cpu(), z.grad.cpu()))
    torch.testing.assert_close(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1])
