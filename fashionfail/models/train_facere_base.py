"""Train Facere as the original project did: `python fashionfail/models/train_facere_base.py ...`.

Same code as the DVC stage `train-facere`; run with --help for the flags.
"""

from fashionfail.models.seed_cli import main_base

if __name__ == "__main__":
    main_base()
