"""The `uwstego` command: a thin dispatcher over sub-commands registered as plugins.

Each package registers its sub-commands under the entry-point group ``uwstego.commands`` as a
``register(subparsers)`` function, so the vehicle (which installs only the ``edge`` extra) never
imports torch just to parse the command line.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from uwstego import __version__
from uwstego.errors import UwstegoError, missing_package

COMMAND_GROUP = "uwstego.commands"
log = logging.getLogger(__name__)


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already says its default, or
    there is nothing to say (flags, and None, whose meaning the help text must spell out)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # Identity checks: a default of 0 is worth printing, None and False are not.
        if ("default" in text or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uwstego", formatter_class=HelpFormatter,
        description="Unsupervised underwater segmentation: synth, train, export, replay.",
    )
    parser.add_argument("--version", action="version", version=f"uwstego {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:
            # A sub-command whose extra is not installed (e.g. `train` on the vehicle) is listed
            # with the reason instead of breaking every other command.
            _register_unavailable(subparsers, ep.name, exc)
            continue
        register(subparsers)
    return parser


def _register_unavailable(subparsers: argparse._SubParsersAction, name: str,
                          exc: Exception) -> None:
    module = getattr(exc, "name", None)
    reason = (missing_package(f"uwstego {name}", module) if module
              else f"uwstego {name} is unavailable: {exc}")
    sub = subparsers.add_parser(name, help=reason)

    def fail(_args: argparse.Namespace) -> int:
        log.error("%s", reason)
        return 2

    sub.set_defaults(func=fail)


# Libraries whose debug output (font searches, PNG chunks, HTTP) would bury ours under -v.
QUIET_LIBRARIES = ("matplotlib", "PIL", "urllib3", "fsspec", "h5py", "asyncio", "tensorboard",
                   "numba", "filelock")


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO)


def describe_error(exc: BaseException) -> str:
    """One line for the user: an OSError as ``PATH: cause``, anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
        text = f"{' -> '.join(paths) or 'a file'}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    # Some libraries put newlines in their messages; the log line stays one line.
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace
                ) -> int:
    """Run a sub-command; bad input, failed checks and file-system errors (a full disk) end in
    one line naming the problem (with the traceback too under ``-v``), not a traceback."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except ModuleNotFoundError as exc:
        # The vehicle installs only the edge extra; training and export commands need more.
        log.error("%s", missing_package("this command", exc.name or str(exc)),
                  exc_info=getattr(args, "verbose", False))
        return 1
    except (UwstegoError, ValueError, OSError, RuntimeError, sqlite3.Error) as exc:
        # UwstegoError: every error the project raises on purpose (edge/errors.py).
        # sqlite3.Error: a sqlite3 bag on a full disk ("database or disk is full").
        log.error("%s", describe_error(exc), exc_info=getattr(args, "verbose", False))
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
