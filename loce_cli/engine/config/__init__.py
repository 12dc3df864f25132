"""mmdet configs: loading one (a file or a shipped config's name, with --cfg-options) and the shipped ones by name."""

from loce_cli.engine.config.loading import dataset_paths, load_config, train_dataset_cfg
from loce_cli.engine.config.names import (ShippedConfig, config_file_name, configs_root, resolve_config,
                                          shipped_configs)

__all__ = ["ShippedConfig", "config_file_name", "configs_root", "dataset_paths", "load_config", "resolve_config",
           "shipped_configs", "train_dataset_cfg"]
