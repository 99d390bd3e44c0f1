"""Reporting: `ferbench aggregate` turns run folders into tables, paper tables, figures and one
HTML page; `ferbench compare` sets two results folders side by side.

Imports run one way: aggregate.py (the command) uses tables.py (per-dataset and per-paper
tables), figures.py (PNG and PDF), headline.py (the headline figure per dataset) and html.py
(the page; header.py: its provenance facts), which use runs.py
(loading, validating and labelling runs; score frames), stats.py (confidence intervals and paired
tests over folds x seeds), outputs.py (files written per output folder) and published.py (the
five papers' published numbers, as data). compare.py (the other command) uses runs.py, stats.py
and tables.py. Nothing imports aggregate.py or compare.py but the CLI.
"""
