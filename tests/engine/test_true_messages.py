"""Messages that must say what is true (issue 31): a resumed run's config, an interrupted quickstart's advice, a
quickstart rerun's skipped eval, an empty image, an eval's progress in a pipe."""

from __future__ import annotations

from pathlib import Path

from loce_cli.engine.training.run import TrainRequest


def test_a_resumed_run_names_its_config_not_a_temporary_file(tiny_base_model):
    """The run's config is read back from the checkpoint through a temporary saved_config.py; what the run
    reports as its config (the 'training (base): CONFIG ...' line, the log) is the CONFIG given."""
    from loce_cli.engine.training.run import run_config

    config, ckpt, options = tiny_base_model
    cfg = run_config(TrainRequest(config="synthetic/mask_rcnn_r18_fpn_normed_synth", resume=str(ckpt),
                                  cfg_options=options))
    assert Path(cfg.filename).resolve() == Path(config).resolve() and "saved_config" not in cfg.filename
    cfg = run_config(TrainRequest(config=str(config), resume=str(ckpt), cfg_options=options))
    assert cfg.filename == str(config) and cfg.runner.max_epochs == 2  # the run's own config all the same
