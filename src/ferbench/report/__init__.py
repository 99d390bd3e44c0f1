"""Reporting: `ferbench aggregate` turns run folders into tables, paper tables and figures.

Imports run one way: aggregate.py (the command) uses tables.py (per-dataset and per-paper
tables) and figures.py (PNGs), which use runs.py (loading, validating and labelling runs; score
frames), outputs.py (files written per output folder) and published.py (the seed papers'
published numbers, as data). Nothing imports aggregate.py but the CLI.
"""
