"""Honest evaluation: discrimination and calibration with bootstrap CIs, decision curves, subgroups, plots."""
