"""Presenting results: NIfTI heatmaps in the native grid, paper-style figures, HTML report."""
