"""Figures of dint-bench results (matplotlib, no Jupyter)."""
