"""fashionfail: the reproducible training pipeline of the FashionFail paper (Facere, Facere+)."""

__version__ = "0.1.0"
