"""``--amp`` and the config keys (mmdet's ``fp16 = dict(loss_scale=...)``, loce's resolved ``amp = dict(...)``):
one setting, checked before anything runs; the CLI's one-line errors and exit codes. No training here."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.runtime import amp
from loce_cli.errors import DataError, LoceUsageError

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
runner = CliRunner()


def _cfg(tmp_path, extra: str):
    from loce_cli.engine.config.loading import load_config

    path = tmp_path / "amp_cfg.py"
    path.write_text(f"_base_ = [{str(BASE)!r}]\n{extra}\n")
    return load_config(path)


def test_flag_and_config_keys_resolve_to_one_setting(tmp_path):
    plain = _cfg(tmp_path, "")
    assert amp.resolve(plain, None, "cpu", "c") is None  # fp32
    assert amp.resolve(plain, "bf16", "cpu", "c") == dict(dtype="bf16", loss_scale=None)
    assert amp.resolve(plain, "fp16", "cuda", "c") == dict(dtype="fp16", loss_scale="dynamic")
    for text, want in (("fp16 = dict(loss_scale='dynamic')", "dynamic"), ("fp16 = dict(loss_scale=512.0)", 512.0),
                       ("fp16 = dict()", 512.0),  # mmcv's default
                       ("fp16 = dict(loss_scale=dict(init_scale=1024.0, growth_interval=100))",
                        dict(init_scale=1024.0, growth_interval=100))):
        assert amp.resolve(_cfg(tmp_path, text), None, "cuda", "c") == dict(dtype="fp16", loss_scale=want), text
        # the flag with the same dtype keeps the config's scale
        assert amp.resolve(_cfg(tmp_path, text), "fp16", "cuda", "c")["loss_scale"] == want
    # the resolved key (what a run's saved config holds) reads back to itself
    assert amp.resolve(_cfg(tmp_path, "amp = dict(dtype='bf16')"), None, "cpu", "c") == dict(dtype="bf16",
                                                                                             loss_scale=None)
    # apply: one key in the run's config, mmdet's fp16 removed
    cfg = amp.apply(_cfg(tmp_path, "fp16 = dict(loss_scale=256.0)"), None, "cuda", "c")
    assert cfg.get("fp16") is None and cfg.amp == dict(dtype="fp16", loss_scale=256.0)
    assert "amp = dict(dtype='fp16', loss_scale=256.0)" in cfg.pretty_text


def test_flag_overrides_the_config_on_a_fresh_run_with_a_warning_and_never_on_a_resume(tmp_path):
    said = []
    cfg = _cfg(tmp_path, "fp16 = dict(loss_scale='dynamic')")
    assert amp.resolve(cfg, "bf16", "cpu", "my.py", warn=said.append) == dict(dtype="bf16", loss_scale=None)
    assert said == ["--amp bf16 overrides my.py's fp16 setting"]
    with pytest.raises(LoceUsageError, match="differs from the run's precision \\(fp32\\)"):
        amp.resolve(_cfg(tmp_path, ""), "bf16", "cpu", "c", resumed=True)
    with pytest.raises(LoceUsageError, match="differs from the run's precision \\(bf16\\)"):
        amp.resolve(_cfg(tmp_path, "amp = dict(dtype='bf16')"), "fp16", "cuda", "c", resumed=True)
    assert amp.resolve(_cfg(tmp_path, "amp = dict(dtype='bf16')"), "bf16", "cpu", "c", resumed=True)["dtype"] == "bf16"


def test_cli_choices_are_the_engine_s():
    from loce_cli.cli import options as choices

    assert choices.AMP == amp.CHOICES


def test_bad_settings_are_one_clear_error_each(tmp_path):
    with pytest.raises(LoceUsageError, match="--amp fp16 needs a CUDA GPU") as e:
        amp.resolve(_cfg(tmp_path, ""), "fp16", "cpu", "c")
    assert "--amp bf16" in e.value.hint
    with pytest.raises(DataError, match="asks for fp16 mixed precision, which needs a CUDA GPU"):
        amp.resolve(_cfg(tmp_path, "fp16 = dict(loss_scale='dynamic')"), None, "cpu", "c")
    with pytest.raises(DataError, match="loss_scale=512 is an int") as e:  # mmcv raises ValueError deep inside
        amp.resolve(_cfg(tmp_path, "fp16 = dict(loss_scale=512)"), None, "cuda", "c")
    assert "loss_scale=512.0" in e.value.hint
    for text, match in (("fp16 = dict(loss_scale='auto')", "must be 'dynamic', a float"),
                        ("fp16 = dict(loss_scale=-1.0)", "must be > 0"),
                        ("fp16 = dict(loss_scale=dict(scale=2.0))", "unknown key"),
                        ("fp16 = dict(loss_scale=512.0, opt_level='O1')", "loss_scale only"),
                        ("fp16 = True", "must be a dict"),
                        ("amp = dict(dtype='int8')", "amp must be dict"),
                        ("amp = dict(dtype='bf16', loss_scale=512.0)", "takes no loss_scale"),
                        ("amp = dict(dtype='bf16')\nfp16 = dict(loss_scale=512.0)", "disagree")):
        with pytest.raises(DataError, match=match):
            amp.resolve(_cfg(tmp_path, text), None, "cuda", "c")
    with pytest.raises(LoceUsageError, match="not one of fp16, bf16"):
        amp.resolve(_cfg(tmp_path, ""), "fp8", "cuda", "c")
    with pytest.raises(LoceUsageError, match="needs a CUDA GPU"):
        amp.check_inference("fp16", "cpu")
    amp.check_inference("bf16", "cpu")


def test_cli_refuses_fp16_on_cpu_and_an_int_loss_scale_in_one_line(tiny_dataset, tmp_path):
    from tests.conftest import tiny_train_options

    options = [x for o in tiny_train_options(tiny_dataset) for x in ("--cfg-options", o)]
    work = tmp_path / "w"
    r = runner.invoke(app, ["train", "base", str(BASE), "--work-dir", str(work), "--amp", "fp16", *options])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().count("\n") == 0 and "--amp fp16 needs a CUDA GPU" in r.stderr and "--amp bf16" in r.stderr
    int_scale = tmp_path / "int_scale.py"
    int_scale.write_text(f"_base_ = [{str(BASE)!r}]\nfp16 = dict(loss_scale=512)\n")
    r = runner.invoke(app, ["train", "base", str(int_scale), "--work-dir", str(work), "--device", "cpu", *options])
    assert r.exit_code == 1 and "loss_scale=512 is an int" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "base", str(BASE), "--work-dir", str(work), "--amp", "fp8", *options])
    assert r.exit_code == 2 and "is not one of" in r.stderr and "fp16" in r.stderr
    r = runner.invoke(app, ["eval", str(BASE), str(tmp_path / "x.pth"), "--amp", "fp16", *options])
    assert r.exit_code == 2 and "--amp fp16 needs a CUDA GPU" in r.stderr
    assert not work.exists()  # nothing written for refused requests
