"""loce: LOCE long-tailed object detection (ICCV 2021) as a command-line toolkit over mmdet 2.x."""

__version__ = "0.1.0"
