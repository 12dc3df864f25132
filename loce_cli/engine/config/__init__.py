"""mmdet configs: the shipped ones by name (``names``, plain Python: ``loce configs`` needs no torch) and loading
one with --cfg-options (``loading``, through mmcv: import it as ``loce_cli.engine.config.loading``)."""

from loce_cli.engine.config.names import (ShippedConfig, config_file_name, configs_root, resolve_config,
                                          shipped_configs)

__all__ = ["ShippedConfig", "config_file_name", "configs_root", "resolve_config", "shipped_configs"]
