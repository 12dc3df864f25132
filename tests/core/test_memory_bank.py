import math

import pytest
import torch
from torch import nn

from loce_cli.core.memory_bank import FeatureMemory


def _feats(values, shape=(2, 1, 1)):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, *shape).contiguous()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])  # fp16/bf16: converting push
def test_push_wraps_around_per_class(dtype):
    m = FeatureMemory(3, queue_size=4, feat_shape=(2, 1, 1), dtype=dtype)
    m.push(_feats([1, 2, 3]), torch.tensor([0, 0, 0]))
    m.push(_feats([4, 5, 6]), torch.tensor([0, 0, 0]))
    assert m.counts.tolist() == [4, 0, 0] and m.ptrs.tolist() == [2, 0, 0]
    # ring: slots 0..3 got 1,2,3,4 then 5,6 overwrote slots 0,1
    assert m.feats[0, :, 0, 0, 0].tolist() == [5, 6, 3, 4]
    assert (m.labels[0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])  # fp16/bf16: converting push
def test_classes_are_isolated_and_regression_targets_kept(dtype):
    m = FeatureMemory(3, queue_size=3, feat_shape=(2, 1, 1), dtype=dtype)
    reg = torch.arange(12, dtype=torch.float32).view(3, 4)
    m.push(_feats([10, 20, 11]), torch.tensor([1, 2, 1]), reg)
    assert m.counts.tolist() == [0, 2, 1]
    assert m.feats[1, :2, 0, 0, 0].tolist() == [10, 11]
    assert m.feats[2, 0, 0, 0, 0].item() == 20
    assert torch.equal(m.reg_targets[1, :2], reg[[0, 2]])
    assert torch.equal(m.reg_targets[2, 0], reg[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])  # fp16/bf16: converting push
def test_more_items_than_queue_in_one_batch_keeps_the_last(dtype):
    m = FeatureMemory(2, queue_size=3, feat_shape=(2, 1, 1), dtype=dtype)
    m.push(_feats([1, 2, 3, 4, 5]), torch.tensor([1, 1, 1, 1, 1]))
    assert m.counts.tolist() == [0, 3]
    assert sorted(m.feats[1, :, 0, 0, 0].tolist()) == [3, 4, 5]
    assert m.ptrs[1].item() == 5 % 3
    # class 1's last slot is the row just before the spare one; class 0 brings one item too many
    m.push(_feats([6, 7, 8, 9, 10]), torch.tensor([1, 0, 0, 0, 0]))
    assert m.counts.tolist() == [3, 3] and m.ptrs.tolist() == [4 % 3, 6 % 3]
    assert m.feats[1, :, 0, 0, 0].tolist() == [4, 5, 6] and m.feats[0, :, 0, 0, 0].tolist() == [10, 8, 9]


def test_sampling_probability_proportional_to_inverse_score():
    m = FeatureMemory(4, queue_size=2, feat_shape=(1, 1, 1))
    m.push(_feats([0, 1, 2], (1, 1, 1)), torch.tensor([0, 1, 2]))  # class 3 stays empty
    s = torch.tensor([0.1, 0.2, 0.4, 0.001, 0.01])
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([m.sample(s, num_classes=8, num_features=1, generator=g)[1] for _ in range(3000)])
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    inv = torch.tensor([10.0, 5.0, 2.5, 0.0])
    expected = inv / inv.sum()
    n = draws.numel()
    for c in range(3):
        sd = math.sqrt(expected[c] * (1 - expected[c]) / n)
        assert abs(freq[c] - expected[c]) < 5 * sd
    assert freq[3] == 0  # empty queue never drawn


def test_sample_shapes_uniform_within_filled_slots_and_empty_memory():
    m = FeatureMemory(2, queue_size=5, feat_shape=(3, 2, 2))
    f, l, r = m.sample(torch.full((3,), 0.5))
    assert f.shape == (0, 3, 2, 2) and l.numel() == 0 and r.shape == (0, 4)
    m.push(torch.randn(2, 3, 2, 2), torch.tensor([1, 1]))
    f, l, r = m.sample(torch.full((3,), 0.5), num_classes=8, num_features=4)
    assert f.shape == (32, 3, 2, 2) and (l == 1).all() and r.shape == (32, 4)
    stored = m.feats[1, :2].reshape(2, -1)
    # every sampled feature is one of the two filled slots, never an unfilled one
    assert all(any(torch.equal(x, y) for y in stored) for x in f.reshape(32, -1))


def test_sampled_slots_are_uniform_over_the_filled_ones():
    m = FeatureMemory(1, queue_size=7, feat_shape=(1, 1, 1))
    m.push(_feats([0, 1, 2, 3, 4], (1, 1, 1)), torch.zeros(5, dtype=torch.long))  # 5 of 7 slots filled
    g = torch.Generator().manual_seed(3)
    values = torch.cat([m.sample(torch.full((2,), 0.5), num_classes=8, num_features=50, generator=g)[0].flatten()
                        for _ in range(50)])  # 20,000 draws
    freq = torch.bincount(values.long(), minlength=7)
    assert freq[5:].sum() == 0  # never an unfilled slot
    expected, sd = 4000, math.sqrt(20000 * 0.2 * 0.8)
    assert (freq[:5] - expected).abs().max() < 5 * sd, freq.tolist()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_honoured_and_bytes(dtype):
    m32 = FeatureMemory(10, queue_size=8, feat_shape=(4, 7, 7))
    m16 = FeatureMemory(10, queue_size=8, feat_shape=(4, 7, 7), dtype=dtype)
    assert m16.flat_feats.dtype == dtype
    feat_bytes = lambda m: m.flat_feats.numel() * m.flat_feats.element_size()  # noqa: E731
    assert feat_bytes(m16) * 2 == feat_bytes(m32)
    x = torch.randn(3, 4, 7, 7)
    m16.push(x, torch.tensor([0, 0, 1]))
    m16.push(torch.randn(2, 4, 7, 7), torch.tensor([2, 2]))
    assert torch.allclose(m16.feats[0, :2].float(), x[:2], atol=1e-2, rtol=1e-2)
    f, _, _ = m16.sample(torch.full((11,), 0.5))
    assert f.dtype == torch.float32


def test_state_dict_round_trip_bit_exact():
    m = FeatureMemory(3, queue_size=4, feat_shape=(2, 2, 2), dtype=torch.float16)
    m.push(torch.randn(7, 2, 2, 2), torch.tensor([0, 1, 1, 2, 2, 2, 2]), torch.randn(7, 4))
    n = FeatureMemory(3, queue_size=4, feat_shape=(2, 2, 2), dtype=torch.float16)
    assert n.is_empty()
    n.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(v.view(torch.uint8) if v.is_floating_point() else v,
                           n.state_dict()[k].view(torch.uint8) if v.is_floating_point() else n.state_dict()[k]), k
    assert not n.is_empty()
    assert n.sample(torch.full((4,), 0.5))[0].shape[0] == 32


def test_lvis_scale_nbytes_fp16_under_2_5_gb():
    # meta device: the size of LVIS v1 queues without allocating them
    m = FeatureMemory(1203, queue_size=80, feat_shape=(256, 7, 7), dtype=torch.float16, device="meta")
    assert m.nbytes() <= 2.5e9
    m32 = FeatureMemory(1203, queue_size=80, feat_shape=(256, 7, 7), device="meta")
    assert 4.8e9 < m32.nbytes() < 4.9e9


def test_state_dict_without_memory_keeps_it_and_reports_nothing_missing():
    m = FeatureMemory(2, queue_size=2, feat_shape=(1, 1, 1))
    m.push(torch.ones(1, 1, 1, 1), torch.tensor([0]))
    result = m.load_state_dict({}, strict=True)
    assert result.missing_keys == [] and m.counts.tolist() == [1, 0]
    partial = {"counts": torch.zeros(2, dtype=torch.long)}
    with pytest.raises(RuntimeError, match="Missing key"):
        m.load_state_dict(partial, strict=True)


def test_keep_on_host_ignores_module_moves():
    m = FeatureMemory(2, queue_size=2, feat_shape=(1, 1, 1), keep_on_host=True)
    owner = torch.nn.Module()
    owner.memory = m
    owner.to(torch.float64)  # any _apply: the host memory stays as it is
    assert m.flat_feats.dtype == torch.float32 and m.flat_feats.device.type == "cpu"
    free = FeatureMemory(2, queue_size=2, feat_shape=(1, 1, 1))
    owner.memory = free
    owner.to("meta")
    assert free.flat_feats.device.type == "meta"


@pytest.mark.parametrize("dtype, bits, shape", [
    (torch.float32, torch.int32, (4, 2, 2)),
    (torch.float32, torch.int32, (3, 1, 1)),
    (torch.float16, torch.int16, (8, 1, 1)),   # same-dtype fp16 push
    (torch.bfloat16, torch.int16, (4, 3, 1)),
])
# source placement: "aligned"; "offset": one element into its storage; "base": a storage that itself starts off a
# 16-byte boundary (storage offset 0, unaligned address: as DLPack imports or frombuffer can give)
@pytest.mark.parametrize("offset", ["aligned", "offset", "base"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_push_and_sample_move_feature_bits_exactly(dtype, bits, shape, offset, device):
    # random bit patterns (NaN payloads, infinities, subnormals included): every path must copy bits, never values
    g = torch.Generator().manual_seed(5)
    n, row = 40, math.prod(shape)
    lo, hi = torch.iinfo(bits).min, torch.iinfo(bits).max
    raw = torch.randint(lo, hi, (n * row + 1,), dtype=bits, generator=g).to(device)
    if offset == "base":
        size = raw.element_size()
        storage = raw.untyped_storage()[size: size * (n * row + 1)]
        feats = torch.empty(0, dtype=bits, device=device).set_(storage, 0, (n * row,), (1,)).view(dtype)
        feats = feats.view(n, *shape)
        assert feats.storage_offset() == 0 and feats.data_ptr() % 16 != 0
    else:
        feats = raw[int(offset == "offset"):][: n * row].view(dtype).view(n, *shape)
    labels = torch.randint(0, 3, (n,), generator=g).to(device)
    m = FeatureMemory(3, 16, shape, dtype=dtype, device=device)
    m.push(feats, labels)
    for c in range(3):  # the last 16 items of each class, in ring order from slot 0
        mine = feats[labels == c][-16:]
        k = mine.shape[0]
        start = (int((labels == c).sum()) - k) % 16
        got = torch.roll(m.feats[c], -start, 0)[:k] if k == 16 else m.feats[c, :k]
        assert torch.equal(got.view(bits), mine.view(bits))
    gen = torch.Generator(device).manual_seed(6)
    f, lab, _ = m.sample(torch.full((4,), 0.5, device=device), num_classes=8, num_features=4, generator=gen,
                         out_dtype=None)
    assert f.dtype == dtype and f.shape == (32, *shape)
    stored = m.flat_feats.view(bits).view(m.flat_feats.shape[0], -1)
    for row_bits, c in zip(f.view(bits).view(32, -1), lab.tolist()):
        assert (stored[c * 16:(c + 1) * 16] == row_bits).all(1).any()  # an exact copy of a row of its queue


def test_memory_in_channels_last_layout_still_pushes_and_samples():
    # module.to(memory_format=channels_last) converts every 4-D buffer, the feature store included
    a, b = nn.Module(), nn.Module()
    a.m, b.m = FeatureMemory(3, 4, (8, 2, 2)), FeatureMemory(3, 4, (8, 2, 2))
    b.to(memory_format=torch.channels_last)
    assert not b.m.flat_feats.is_contiguous()
    feats, labels = torch.randn(7, 8, 2, 2), torch.tensor([0, 1, 2, 0, 1, 0, 0])
    for mod in (a, b):
        mod.m.push(feats, labels)
    assert torch.equal(a.m.counts, b.m.counts) and a.m.counts.tolist() == [4, 2, 1]
    for c, k in enumerate(a.m.counts.tolist()):  # the filled slots (the others were never written)
        assert torch.equal(a.m.feats[c, :k], b.m.feats[c, :k])
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    fa, la, _ = a.m.sample(torch.full((4,), 0.5), generator=ga)
    fb, lb, _ = b.m.sample(torch.full((4,), 0.5), generator=gb)
    assert torch.equal(fa, fb) and torch.equal(la, lb)
