"""ferbench: a reproducible benchmark of contrastive learning for facial emotion recognition."""

__version__ = "0.1.0"
