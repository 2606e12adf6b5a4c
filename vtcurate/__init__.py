"""vtcurate: bilingual (English + Chinese) video-text data curation after the M2-RAAP recipe."""

__version__ = "0.1.0"
