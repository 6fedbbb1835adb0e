"""The original project's data command, kept: `python fashionfail/data/make_fashionpedia.py`.

A shim: the command lives in `fashionfail.commands.compat` (run with --help for the flags).
"""

import sys

from fashionfail.commands.compat import make_fashionpedia_main

if __name__ == "__main__":
    sys.exit(make_fashionpedia_main())
