"""`python -m fashionfail <command> ...`, the same as the installed `fashionfail` command."""

import sys

from fashionfail.commands.main import main

sys.exit(main())
