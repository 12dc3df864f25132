"""loce quickstart end to end on a tiny synthetic set; a second run skips every finished step."""

import pytest

from loce_cli.engine.quickstart import run_quickstart
from loce_cli.engine.synth import SynthOptions

SMALL = ["model.roi_head.bbox_head.num_classes=6", "model.roi_head.mask_head.num_classes=6", "runner.max_epochs=1",
         "data.workers_per_gpu=0", "lr_config.warmup_iters=5", "lr_config.step=[1]"]


@pytest.mark.slow
def test_quickstart_runs_all_steps_then_skips_them(tmp_path, monkeypatch):
    synth = SynthOptions(num_classes=6, train_images=24, val_images=10, image_size=64, seed=1)
    lines = []
    first = run_quickstart(tmp_path, echo=lines.append, cfg_options={"base": SMALL, "finetune": SMALL},
                           synth_options=synth)
    assert [s.name for s in first.steps] == ["data", "base", "finetune", "eval"]
    assert all(s.status == "done" for s in first.steps)
    assert set(first.metrics) == {"base", "loce"} and "APr" in first.metrics["loce"]["bbox"]
    assert "APr" in first.metrics["loce"]["bbox AP-fixed"]  # AP-fixed next to AP
    assert (tmp_path / "eval" / "loce" / "metrics.json").is_file()
    assert any(line.startswith("[4/4] eval") for line in lines)
    second = run_quickstart(tmp_path, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth)
    assert [s.status for s in second.steps] == ["skipped"] * 4
    assert second.metrics == first.metrics
    # the command ends with loce report's table: base vs LOCE with deltas
    from typer.testing import CliRunner

    from loce_cli.cli import app
    from loce_cli.engine import quickstart as qs

    monkeypatch.setattr(qs, "run_quickstart", lambda work_dir, echo=None: run_quickstart(
        work_dir, echo, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth))
    r = CliRunner().invoke(app, ["quickstart", "--work-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "ΔAPr" in r.stdout and "loce report" in r.stdout
    loce_row = next(line for line in r.stdout.splitlines() if "│ loce" in line and "bbox" in line)
    assert f"{100 * first.metrics['loce']['bbox']['APr']:.1f}" in loce_row
    fixed_row = next(line for line in r.stdout.splitlines() if "│ loce" in line and "bbox AP-fixed" in line)
    assert f"{100 * first.metrics['loce']['bbox AP-fixed']['AP']:.1f}" in fixed_row
