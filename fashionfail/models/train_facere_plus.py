"""The original project's Facere+ command: `python fashionfail/models/train_facere_plus.py`.

A shim: the command lives in `fashionfail.commands.compat` (run with --help for the flags); it
fine-tunes with the same code as the DVC stage `finetune-facere-plus`.
"""

import sys

from fashionfail.commands.compat import train_facere_plus

if __name__ == "__main__":
    sys.exit(train_facere_plus())
