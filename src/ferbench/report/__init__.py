"""Reporting: `ferbench aggregate` turns run folders into tables, paper tables and figures.

aggregate.py loads and validates runs and writes the DVC summary/plots files; tables.py renders
per-dataset and per-paper tables; figures.py draws PNGs; published.py holds the seed papers'
published numbers as data.
"""
