"""One self-contained HTML page from a run's JSON, plots and audio."""

from emosteer.report.build import PAGE_FILE, build_report

__all__ = ["PAGE_FILE", "build_report"]
