"""The LOCE method and its data helpers in plain Python / PyTorch. Never imports mmdet or mmcv."""
