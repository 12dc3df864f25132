"""Real mixed-precision runs on the CPU (bf16 autocast): a LOCE fine-tune with finite losses, ``--amp bf16`` and
the config key giving the same run, 1 + resume = 2 bit-identical to 2 straight, and ``loce eval --amp bf16``
against fp32 on the synthetic val set (the session's ``tiny_base_model``)."""

import collections
import json
from pathlib import Path

import pytest
import torch

from loce_cli.engine.training.run import TrainRequest, train

ROOT = Path(__file__).resolve().parents[2]
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"


def _state(path):
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _assert_same(a_path, b_path):
    a, b = _state(a_path)["state_dict"], _state(b_path)["state_dict"]
    filled = a["roi_head.memory.flat_labels"] >= 0  # unwritten memory slots hold no data and are never read
    assert int(filled.sum()) > 0
    for key in a:
        x, y = (a[key][filled], b[key][filled]) if key.endswith("flat_feats") else (a[key], b[key])
        assert torch.equal(x, y), key


@pytest.mark.slow
def test_bf16_finetune_flag_equals_config_key_and_resume_is_bit_exact(tiny_base_model, tiny_loce_run, tiny_dataset,
                                                                       tmp_path):
    from tests.conftest import tiny_train_options

    _config, base_ckpt, _ = tiny_base_model
    flag, key = tmp_path / "flag", tmp_path / "key"
    keyed = tmp_path / "loce_bf16.py"  # the config key instead of the flag
    keyed.write_text(f"_base_ = [{str(LOCE)!r}]\namp = dict(dtype='bf16')\n")
    straight = train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(flag),
                                  base_checkpoint=str(base_ckpt), amp="bf16",
                                  cfg_options=tiny_train_options(tiny_dataset, epochs=2)))
    assert straight.epochs == 2 and straight.memory_init["images"] > 0
    train(TrainRequest(config=str(keyed), stage="finetune", work_dir=str(key), base_checkpoint=str(base_ckpt),
                       cfg_options=tiny_train_options(tiny_dataset, epochs=1)))
    _assert_same(flag / "epoch_1.pth", key / "epoch_1.pth")  # --amp bf16 and amp = dict(dtype='bf16'): one run
    resumed = train(TrainRequest(config=str(keyed), stage="finetune", work_dir=str(key), base_checkpoint=str(base_ckpt),
                                 resume="auto", cfg_options=tiny_train_options(tiny_dataset, epochs=2)))
    assert resumed.memory_init is None  # memory restored from the checkpoint
    _assert_same(flag / "epoch_2.pth", key / "epoch_2.pth")  # 1 + resume = 2 straight, bit for bit
    meta = _state(key / "epoch_2.pth")["meta"]
    assert meta["amp"] == dict(dtype="bf16", scaler=None, skipped=0)  # the resumed run kept the run's bf16
    assert "amp = dict(dtype='bf16', loss_scale=None)" in meta["config"]
    losses = [json.loads(line) for log in flag.glob("*.log.json") for line in log.read_text().splitlines()[1:]]
    losses = [r["loss"] for r in losses if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    # bf16 really ran: the weights differ from an fp32 run's after one epoch (the session's LOCE fine-tune: the
    # same base checkpoint and options, without amp)
    fp32 = tiny_loce_run.result
    assert tiny_loce_run.options == tiny_train_options(tiny_dataset, epochs=1)
    a, b = _state(fp32.checkpoint)["state_dict"], _state(flag / "epoch_1.pth")["state_dict"]
    assert not torch.equal(a["roi_head.bbox_head.fc_cls.weight"], b["roi_head.bbox_head.fc_cls.weight"])
    assert "amp" not in _state(fp32.checkpoint)["meta"]


def _iou(p, q):
    x1, y1 = max(p[0], q[0]), max(p[1], q[1])
    x2, y2 = min(p[0] + p[2], q[0] + q[2]), min(p[1] + p[3], q[1] + q[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = p[2] * p[3] + q[2] * q[3] - inter
    return inter / union if union > 0 else 0.0


# the stated tolerance (docs/MIXED_PRECISION.md): on the tiny fixture model (AP ~2) fp32 and bf16 AP differed by 0.16
# and 0.68 points in two runs, so AP is held to 1 point; the per-detection match is the sharper check
SCORE_MIN, IOU_MIN, MATCHED_MIN, AP_POINTS = 0.05, 0.5, 0.9, 1.0


@pytest.mark.slow
def test_eval_under_bf16_matches_fp32_within_tolerance(tiny_base_model, tmp_path):
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model

    config, ckpt, options = tiny_base_model
    reports, results = {}, {}
    for amp in (None, "bf16"):
        out = tmp_path / str(amp)
        reports[amp] = evaluate_model(EvalRequest(str(config), str(ckpt), str(out), cfg_options=options, amp=amp))
        results[amp] = json.loads((out / "results.json").read_text())
    assert results[None] != results["bf16"]  # the inference did run under bf16
    bf16 = collections.defaultdict(list)
    for d in results["bf16"]:
        bf16[(d["image_id"], d["category_id"])].append(d["bbox"])
    confident = [d for d in results[None] if d["score"] >= SCORE_MIN]
    assert len(confident) > 50
    matched = sum(any(_iou(d["bbox"], b) >= IOU_MIN for b in bf16[(d["image_id"], d["category_id"])])
                  for d in confident)
    assert matched / len(confident) >= MATCHED_MIN, (matched, len(confident))
    for metric in ("bbox", "segm"):
        for k in ("AP", "AP50", "APr"):
            a, b = reports[None].metrics[metric].summary[k], reports["bf16"].metrics[metric].summary[k]
            if k == "AP":
                assert abs(a - b) * 100 <= AP_POINTS, (metric, a, b)
            assert a >= 0 and b >= 0


def test_predict_under_bf16_finds_what_fp32_finds(tiny_base_model, tiny_dataset, tmp_path):
    from loce_cli.engine.predict.images import PredictRequest, predict

    config, ckpt, options = tiny_base_model
    image = sorted((tiny_dataset / "val2017").glob("*.jpg"))[0]
    found = {}
    for amp in (None, "bf16"):
        out = tmp_path / str(amp)
        predict(PredictRequest(str(config), str(ckpt), [str(image)], str(out), score_thr=0.05, device="cpu",
                               cfg_options=options, amp=amp))
        found[amp] = json.loads((out / "predictions.json").read_text())
    assert found[None] and found["bf16"] and found[None] != found["bf16"]
    top = max(found[None], key=lambda d: d["score"])
    same = [d for d in found["bf16"] if d["category_id"] == top["category_id"]]
    assert same and max(_iou(top["bbox"], d["bbox"]) for d in same) >= IOU_MIN
