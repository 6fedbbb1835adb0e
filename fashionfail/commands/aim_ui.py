"""`fashionfail aim-up [aim up options]`: the Aim UI, with the project named after this one.

Aim 3 shows every repository as "My awesome project" (a constant in aim.web). This command runs
`aim up` unchanged (same options, same server) except that its web app is
`fashionfail.commands.aim_ui:app`:
aim's own app, with the project name replaced by the repository folder's name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

AIM_APP = "aim.web.run:app"
OUR_APP = "fashionfail.commands.aim_ui:app"


def project_name() -> str:
    """The folder holding the .aim repository (the project's clone), e.g. "fashionfail"."""
    from aim.web.utils import get_root_path

    return Path(get_root_path()).name or "fashionfail"


def _name_the_project() -> None:
    from aim.web.api.projects import project

    original = project.Project.__init__
    if getattr(original, "_fashionfail", False):
        return

    def __init__(self) -> None:
        original(self)
        self.name = project_name()

    __init__._fashionfail = True  # type: ignore[attr-defined]
    project.Project.__init__ = __init__


def __getattr__(name: str):  # `app` is built on first access: only the server process needs it
    if name == "app":
        _name_the_project()
        from aim.web.run import app

        return app
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> int:
    """`aim up` with OUR_APP as the server's app; the server process must import fashionfail."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:  # answered without importing aim (over a second)
        print(
            f"usage: fashionfail aim-up [options of aim up]\n{__doc__}\n"
            "Options: those of `aim up` (see `aim up --help`): --host, --port, --repo, ..."
        )
        return 0
    from aim.cli.up import commands

    build = commands.build_uvicorn_command

    def build_ours(app: str, *args, **kwargs) -> list[str]:
        return build(OUR_APP if app == AIM_APP else app, *args, **kwargs)

    commands.build_uvicorn_command = build_ours
    package_root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p
    )
    result = commands.up.main(args=args, prog_name="fashionfail aim-up", standalone_mode=False)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
