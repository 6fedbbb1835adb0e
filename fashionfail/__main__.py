"""`python -m fashionfail <command> ...`, the same as the installed `fashionfail` command."""

import sys

from fashionfail.commands import main

sys.exit(main())
