"""The ``mvrecon`` command line: thin Click groups that parse, call a stage's ``run`` and print.

Errors a user can fix (:class:`mvrecon.errors.MvreconError`) are caught once, here, and printed as
one line with a non-zero exit; ``--verbose`` shows the traceback too.
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import MvreconError


class _Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MvreconError as e:
            if ctx.meta.get("mvrecon.verbose"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mvrecon")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and full tracebacks.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    envvar="MVRECON_THREADS",
    help="Threads this run may use (default: the cores it may run on); never more than its share "
    "of the cores with other mvrecon runs on the machine (env MVRECON_THREADS).",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, threads: int | None) -> None:
    """mvrecon: calibrated multi-view 3D head reconstruction."""
    from .. import threads as _threads

    ctx.meta["mvrecon.verbose"] = verbose
    if ctx.invoked_subcommand not in (None, "batch"):  # a batch driver only waits: its workers count
        _threads.configure(threads)
    ctx.meta["mvrecon.threads"] = threads
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
    )


def _register() -> None:
    # Each command group lives in its own module of this package and lists what it adds in a
    # module-level ``COMMANDS``; adding a group never means editing this file.
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for cmd in getattr(mod, "COMMANDS", ()):
            main.add_command(cmd)


_register()
