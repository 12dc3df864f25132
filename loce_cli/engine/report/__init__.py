"""``loce report``: evaluated runs side by side (``runs``), after checking they were evaluated on the same data."""

from loce_cli.engine.report.runs import FORMATS, Report, build_report, render_csv, render_markdown

__all__ = ["FORMATS", "Report", "build_report", "render_csv", "render_markdown"]
