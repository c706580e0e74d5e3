"""Reports of a trained run: PNG figures and one self-contained HTML page (`digits report`).

Figures are drawn with matplotlib's Agg backend only; see `digits.report.figures`.
"""

from __future__ import annotations

from digits.report.build import HTML_FILE, Report, build_report

__all__ = ["HTML_FILE", "Report", "build_report"]
