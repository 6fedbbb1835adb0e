"""What every command-line entry point shares: how a known failure is reported.

A user error (bad params, bad data, a missing or unreadable file, a full disk) ends the program
with one `error: ...` line on stderr and exit status 1, never a traceback; anything else is a bug
and keeps its traceback. `--debug` (or the environment variable FASHIONFAIL_DEBUG=1) shows the
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from fashionfail.core.config import ConfigError
from fashionfail.core.jsonio import DataError

DEBUG_ENV = "FASHIONFAIL_DEBUG"

# OSError: unreadable file, permission denied, disk full (the message names the file);
# UnicodeDecodeError: a binary file given as text; msgspec's ValidationError: a JSON value of the
# wrong type. (Pillow's DecompressionBombError and pycocotools' errors on malformed geometry never
# get here: the image and annotation checks turn them into DataErrors naming the file and id.)
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    DataError,
    OSError,
    UnicodeDecodeError,
    msgspec.ValidationError,
)

# torch's DataLoader re-raises a worker's exception with the worker's traceback as its message;
# its last line is "<module>.<Class>: <the original message>".
_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_QUALIFIED = re.compile(r"^[\w.]+: ")


def tool(name: str) -> str:
    """The console command `name` (e.g. "dvc") to start as a subprocess: the one installed beside
    the running interpreter when there is one, else the one on PATH.

    `.venv/bin/fashionfail plots` without an activated venv has no `.venv/bin` on PATH,
    yet the venv's `dvc` is the one installed with this package. (Not resolved: the interpreter is
    often a link to the system's, whose folder holds no `dvc`.)
    """
    beside = Path(sys.executable).parent / name
    if os.access(beside, os.X_OK) and beside.is_file():
        return str(beside)
    return shutil.which(name) or name


def debug_enabled() -> bool:
    """True with --debug or FASHIONFAIL_DEBUG set to anything but '' or '0'."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """The error's message on one line (server replies and library messages may hold breaks)."""
    text = str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and _WORKER_PREFIX.match(lines[0]):
        text = _QUALIFIED.sub("", lines[-1].strip(), count=1)
    return " ".join(text.split("\n")) if text else type(error).__name__


def error_exit(error: BaseException) -> int:
    """Print `error` as one `error:` line and return exit status 1.

    Call it from the `except` block that caught `error`: with --debug / FASHIONFAIL_DEBUG=1 the
    error is re-raised there with its traceback instead.
    """
    if debug_enabled():
        raise error
    print("error: " + " ".join(one_line(error).splitlines()), file=sys.stderr)
    return 1


def report_errors(job: Callable[[], int], extra: tuple[type[Exception], ...] = ()) -> int:
    """Run `job`; USER_ERRORS and `extra` become one `error:` line and exit status 1."""
    try:
        return job()
    except (*USER_ERRORS, *extra) as e:
        return error_exit(e)


ERRORS_EPILOG = (
    "Exit status 1 with a one-line 'error: ...' on stderr (naming the file and id) on bad "
    "params or input; no partial output is left behind. --debug or FASHIONFAIL_DEBUG=1 shows "
    "the traceback instead."
)


class _DebugAction(argparse.Action):
    """--debug sets FASHIONFAIL_DEBUG=1, so processes started from here (DDP ranks) see it too."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[DEBUG_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    """Add `--debug` (tracebacks instead of one-line errors) to a parser."""
    p.add_argument(
        "--debug",
        action=_DebugAction,
        default=False,
        help=f"show tracebacks instead of one-line errors (same as {DEBUG_ENV}=1)",
    )


def parser(doc: str | None, epilog: str = ERRORS_EPILOG) -> argparse.ArgumentParser:
    """An ArgumentParser showing a script's docstring as written, how errors are reported, and
    the --debug flag."""
    p = argparse.ArgumentParser(
        description=doc, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_debug_flag(p)
    return p
