"""One self-contained HTML page from a run's JSON, plots and audio."""

from emosteer.report.build import PAGE_FILE, build_report
from emosteer.report.markdown import steering_table

__all__ = ["PAGE_FILE", "build_report", "steering_table"]
