"""Every picture loce draws: detections on images (``drawing``), the plots of stats, report and inspect, and the
frequency groups' colours (``colours``), in one place."""

from loce_cli.engine.pictures.colours import GROUP_COLOURS, group_rgb

__all__ = ["GROUP_COLOURS", "group_rgb"]
