"""The original project's Facere training command: `python fashionfail/models/train_facere_base.py`.

A shim: the command lives in `fashionfail.commands.compat` (run with --help for the flags); it
trains with the same code as the DVC stage `train-facere`.
"""

import sys

from fashionfail.commands.compat import train_facere_base

if __name__ == "__main__":
    sys.exit(train_facere_base())
