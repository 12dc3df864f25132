"""The four baselines (Seesaw, EQLv2, federated loss, cRT) fine-tune from one real base checkpoint on the tiny
synthetic set and evaluate, with each method's own state in the checkpoint; inference uses the sigmoid scores."""

import json
import math
from pathlib import Path

import pytest
import torch

from loce_cli.engine.training.run import TrainRequest, train
from tests.engine.test_train import LOCE, ROOT, opts

SYNTH = ROOT / "configs" / "synthetic"
BASELINES = ["seesaw", "eqlv2", "federated", "crt"]


def config(name: str) -> Path:
    return SYNTH / f"baseline_{name}_synth.py"


def baseline_opts(data: Path, name: str, epochs: int = 1):
    extra = ["model.roi_head.bbox_head.loss_cls.num_classes=6"] if name == "seesaw" else []
    if name == "federated":
        extra.append("model.roi_head.bbox_head.loss_cls.num_classes_sampled=4")
    return opts(data, epochs=epochs, extra=extra)


def _state(path):
    return torch.load(str(path), map_location="cpu", weights_only=True)["state_dict"]


EPOCHS = {"crt": 2}  # cRT's run also shows its class-first order changing from one epoch to the next
CRT_DRAWN: list = []  # the orders cRT's class-aware sampler drew in its run, one per epoch


@pytest.fixture(scope="module")
def base_ckpt(tiny_base_run) -> Path:
    """The first epoch of the session's base run (tests/conftest.py)."""
    return tiny_base_run.work / "epoch_1.pth"


@pytest.fixture(scope="module")
def finetuned(base_ckpt, tiny_dataset, tmp_path_factory):
    """Each baseline fine-tuned from ``base_ckpt`` in one process (1 epoch; cRT 2, its sampler's orders recorded)."""
    from loce_cli.core import sampling

    real = sampling.class_aware_indices

    def recording(image_class_ids, total, seed):
        out = real(image_class_ids, total, seed)
        CRT_DRAWN.append([image_class_ids[i] for i in out])
        return out

    runs = {}
    for name in BASELINES:
        work = tmp_path_factory.mktemp(f"ft_{name}")
        with pytest.MonkeyPatch.context() as patch:
            if name == "crt":
                patch.setattr(sampling, "class_aware_indices", recording)
            result = train(TrainRequest(config=str(config(name)), stage="finetune", work_dir=str(work),
                                        base_checkpoint=str(base_ckpt),
                                        cfg_options=baseline_opts(tiny_dataset, name, epochs=EPOCHS.get(name, 1))))
        runs[name] = (work, result)
    return runs


def _train_image_counts(data: Path, num_classes: int):
    ann = json.loads((data / "annotations" / "lvis_v1_train.json").read_text())
    cats = sorted(c["id"] for c in ann["categories"])
    images = {c: set() for c in cats}
    for a in ann["annotations"]:
        images[a["category_id"]].add(a["image_id"])
    return [len(images[c]) for c in cats[:num_classes]]


@pytest.mark.slow
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_finetune_trains_only_the_fine_tune_parts(finetuned, base_ckpt, name):
    work, result = finetuned[name]
    assert result.epochs == EPOCHS.get(name, 1) and result.iterations == 10 * result.epochs
    state, base = _state(result.checkpoint), _state(base_ckpt)
    assert torch.equal(state["backbone.conv1.weight"], base["backbone.conv1.weight"])
    assert torch.equal(state["roi_head.bbox_head.shared_fcs.0.weight"], base["roi_head.bbox_head.shared_fcs.0.weight"])
    assert not torch.equal(state["roi_head.bbox_head.fc_reg.weight"], base["roi_head.bbox_head.fc_reg.weight"])
    assert "roi_head.memory.counts" not in state and "roi_head.bbox_head.score_tracker.scores" not in state
    rows = state["roi_head.bbox_head.fc_cls.weight"].shape[0]
    assert rows == (6 + 2 if name == "seesaw" else 6 + 1)


@pytest.mark.slow
def test_each_baseline_keeps_its_own_state_in_the_checkpoint(finetuned, tiny_dataset):
    eql = _state(finetuned["eqlv2"][1].checkpoint)
    counts = _train_image_counts(tiny_dataset, 6)
    pos, neg, ratio = (eql[f"roi_head.bbox_head.loss_cls.state.{k}"] for k in ("pos_grad", "neg_grad", "ratio"))
    assert bool((neg > 0).all()) and bool((pos[torch.tensor(counts) > 0] > 0).all())
    assert torch.allclose(ratio, pos / (neg + 1e-10))  # accumulated over the run, not the initial 100
    fed = _state(finetuned["federated"][1].checkpoint)["roi_head.bbox_head.loss_cls.state.weights"]
    assert fed.tolist() == pytest.approx([math.sqrt(c) for c in counts], rel=1e-6)
    seesaw = _state(finetuned["seesaw"][1].checkpoint)["roi_head.bbox_head.loss_cls.cum_samples"]
    assert float(seesaw[:6].sum()) > 0


@pytest.mark.slow
def test_crt_fine_tune_draws_its_images_class_first(finetuned, tiny_dataset):
    """The cRT config's training loader goes through the class-aware sampler: every class drawn equally often
    (the orders of the 2-epoch cRT run of ``finetuned``)."""
    drawn = CRT_DRAWN
    assert finetuned["crt"][1].epochs == 2
    assert len(drawn) == 2 and len(drawn[0]) == 40  # one order per epoch (reseeded), the dataset's size
    assert drawn[0] != drawn[1]
    classes = sorted({c for labels in drawn[0] for c in labels})
    counts = {c: sum(1 for labels in drawn[0] if c in labels) for c in classes}
    rarest = min(classes, key=lambda c: _train_image_counts(tiny_dataset, 6)[c])
    # drawn class first: the rarest class is in at least its share of 40 / 6 draws, far above its frequency
    assert counts[rarest] >= 40 // len(classes)


@pytest.mark.slow
def test_sigmoid_baselines_score_with_sigmoid_at_inference(finetuned):
    """mmdet's head takes the activation from the loss: EQLv2's class scores are sigmoid(z_c) * (1 - sigmoid(z_bg)),
    the federated loss's sigmoid(z_c) -- not a softmax over the classes."""
    from mmcv import Config
    from mmdet.models import build_detector

    import loce_cli.mmdet_ext  # noqa: F401

    for name, expect in (("eqlv2", lambda p: p[:, :-1] * (1 - p[:, -1:])), ("federated", lambda p: p[:, :-1])):
        cfg = Config.fromfile(str(config(name)))
        model = build_detector(cfg.model)
        head = model.roi_head.bbox_head
        torch.manual_seed(0)
        z = torch.randn(5, 41) * 3
        scores = head.loss_cls.get_activation(z)
        assert torch.allclose(scores[:, :-1], expect(torch.sigmoid(z)), atol=1e-6)
        assert not torch.allclose(scores[:, :-1], torch.softmax(z, 1)[:, :-1], atol=1e-3)
        rois = torch.tensor([[0, 10.0, 10.0, 60.0, 60.0]] * 5)
        boxes, labels = head.get_bboxes(rois, z, torch.zeros(5, 160), (128, 128, 3), None, rescale=False,
                                        cfg=Config(dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=1.0),
                                                        max_per_img=1000)))
        top = boxes[:, 4].max()
        assert float(top) == pytest.approx(float(expect(torch.sigmoid(z)).max()), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["eqlv2", "crt"])
def test_baseline_evaluates_from_the_cli(finetuned, tiny_dataset, tmp_path, name):
    from typer.testing import CliRunner

    from loce_cli.cli import app

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    options = baseline_opts(tiny_dataset, name) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"]
    args = ["eval", str(config(name)), str(finetuned[name][1].checkpoint), "--out", str(tmp_path / "eval"), "--json"]
    for o in options:
        args += ["--cfg-options", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"bbox", "segm"} <= set(metrics["metrics"]) if "metrics" in metrics else {"bbox", "segm"} <= set(metrics)


@pytest.mark.slow
def test_inspect_scores_names_the_baseline_it_was_given(finetuned):
    from loce_cli.engine.inspect.state import inspect_scores
    from loce_cli.errors import DataError

    with pytest.raises(DataError, match="EQLv2 baseline"):
        inspect_scores(Path(finetuned["eqlv2"][1].checkpoint))
    with pytest.raises(DataError, match="Seesaw"):
        inspect_scores(Path(finetuned["seesaw"][1].checkpoint))


def test_baseline_configs_share_loces_fine_tune_schedule_and_trainable_parts():
    from mmcv import Config

    def schedule(cfg):
        return (tuple(cfg.model.trainable), dict(cfg.optimizer), dict(cfg.lr_config), cfg.runner.max_epochs,
                dict(cfg.data.train), cfg.data.samples_per_gpu)

    loce = schedule(Config.fromfile(str(LOCE)))
    for name in BASELINES:
        assert schedule(Config.fromfile(str(config(name)))) == loce, name
    lvis = ROOT / "configs" / "lvis"
    loce_lvis = Config.fromfile(str(lvis / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"))
    for path in ("seesaw", "eqlv2", "federated", "crt"):
        cfg = Config.fromfile(str(lvis / f"{path}_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"))
        assert schedule(cfg) == schedule(loce_lvis), path


@pytest.mark.slow
def test_eqlv2_fine_tune_in_two_cpu_processes(finetuned, base_ckpt, tiny_dataset, tmp_path):
    """Real torch DDP over gloo: the statistics' all-reduce runs on both ranks every step (a rank that skipped it
    would hang the run), and the checkpoint holds statistics of both ranks' images."""
    from loce_cli.engine.training.run import LaunchOptions

    one = finetuned["eqlv2"][0]
    two = tmp_path / "two"
    extra = ["data.samples_per_gpu=2"]
    # one process with 4 images per step (finetuned's eqlv2 run): the same 10 steps of 4 images as 2 processes x 2
    result = train(TrainRequest(config=str(config("eqlv2")), stage="finetune", work_dir=str(two),
                                base_checkpoint=str(base_ckpt),
                                cfg_options=baseline_opts(tiny_dataset, "eqlv2") + extra,
                                launch=LaunchOptions(nproc=2, master_port=29751)))
    assert result.world_size == 2 and result.iterations == 10
    a, b = _state(one / "epoch_1.pth"), _state(two / "epoch_1.pth")
    key = "roi_head.bbox_head.loss_cls.state.neg_grad"
    # every image of the epoch went through one rank or the other: the reduced statistics cover all of them, so
    # they are of the size of one process's over the same 40 images in the same 10 steps (not half of it)
    assert 0.7 < float(b[key].sum() / a[key].sum()) < 1.3
