"""What every command-line entry point shares: how a known failure is reported.

A user error (bad params, bad data, a missing file) ends the program with one `error: ...` line on
stderr and exit status 1, never a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from fashionfail.config import ConfigError
from fashionfail.jsonio import DataError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError)


def error_exit(error: BaseException) -> int:
    """Print `error` as one line (server replies and library messages may hold line breaks)."""
    print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    return 1


def report_errors(job: Callable[[], int], extra: tuple[type[Exception], ...] = ()) -> int:
    """Run `job`; USER_ERRORS and `extra` become one `error:` line and exit status 1."""
    try:
        return job()
    except (*USER_ERRORS, *extra) as e:
        return error_exit(e)


ERRORS_EPILOG = (
    "Exit status 1 with a one-line 'error: ...' on stderr (naming the file and id) on bad "
    "params or input; no partial output is left behind."
)


def parser(doc: str | None, epilog: str = ERRORS_EPILOG) -> argparse.ArgumentParser:
    """An ArgumentParser showing a script's docstring as written, and how errors are reported."""
    return argparse.ArgumentParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
