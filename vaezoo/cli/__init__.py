"""The ``vaezoo`` command line: ``train``, ``eval`` and ``sample`` (also ``python -m vaezoo``).

Flags come from the config dataclasses: the training settings below, then the chosen model's,
guide's (prefixed ``--guide-``) and objective's fields, so ``vaezoo train --model vae --help``
lists exactly what that model takes, with the defaults the dataclasses hold and what each accepts.
Every flag is checked against its field's constraint, and output paths for writability, before any
data is loaded. Errors raised on purpose (:class:`~vaezoo.errors.VaezooError`) print as one line
naming the flag and exit with status 2, as argparse's own usage errors do.
"""

from __future__ import annotations

import argparse
import sys

# Each command module registers its commands on import.
from vaezoo.cli import evaluate, ising, study, train  # noqa: F401
from vaezoo.cli.base import COMMANDS, EVAL_SEED, command
from vaezoo.cli.train import TrainConfig
from vaezoo.errors import VaezooError

__all__ = ["COMMANDS", "EVAL_SEED", "TrainConfig", "command", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="vaezoo", description=__doc__.splitlines()[0])
    top.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {c.help}" for k, c in COMMANDS.items())
    )
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose one of {', '.join(sorted(COMMANDS))}")
    cmd = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"vaezoo {name}", description=cmd.help)
    try:
        cmd.add_arguments(parser, rest)
        args = parser.parse_args(rest)
        cmd.run(args)
    except VaezooError as e:
        print(f"vaezoo {name}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's own usage errors (status 2) and --help (0), as a status here too
        return e.code if isinstance(e.code, int) else 2
    return 0
