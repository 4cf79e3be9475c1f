"""Calibration: the match levels' thresholds fitted on the user's own catalogue (`sourcelens calibrate`), and
the competitor-style transforms that make its queries (and the evaluation's). Owns the calibrations table.
May import search, catalog, core and embeddings; knows no HTTP."""
