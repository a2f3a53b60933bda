"""Quantifying heatmaps: inclusivity, signal distribution, filter calculus, sweeps."""
