"""The ``videocontrast`` command: thin argument parsing that builds a config and calls the library.

Each handler imports its command's module when it runs: the parser needs only torch-free modules (the config and
the name lists), so ``videocontrast --help`` and a bad flag answer without importing torch.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..config import ConfigError
from .commands import (cmd_ablate, cmd_curate, cmd_data, cmd_demo, cmd_embed, cmd_eval, cmd_export, cmd_pretrain,
                       cmd_reproduce, cmd_search, cmd_serve)
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come anywhere, also after options (argparse alone only takes them in one run).
    args, unknown = parser.parse_known_args(argv)
    stray = [u for u in unknown if u.startswith("-") or "=" not in u or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if unknown:
        args.overrides = [*args.overrides, *unknown]
    handlers = {"pretrain": cmd_pretrain, "linear": cmd_eval, "finetune": cmd_eval, "knn": cmd_eval,
                "retrieve": cmd_eval, "data": cmd_data, "demo": cmd_demo, "embed": cmd_embed,
                "search": cmd_search, "curate": cmd_curate, "serve": cmd_serve, "export": cmd_export,
                "ablate": cmd_ablate, "reproduce": cmd_reproduce}
    try:
        return handlers[args.command](args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"videocontrast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not _raised(e, "videocontrast.engine.loop", "NonFiniteLossError"):
            raise
        # a diverged run: what was kept and what to lower (a run failure, not bad input)
        print(f"videocontrast {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C: what was kept and how to go on, no traceback
        print(f"videocontrast {args.command}: interrupted{_how_to_continue(args, argv, e)}", file=sys.stderr)
        return 130


def _raised(e: BaseException, module: str, name: str) -> bool:
    """Whether ``e`` is an instance of ``module.name``, asked without importing that module (it loads torch): a
    command that never imported it cannot have raised it."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(e, getattr(loaded, name))


def _how_to_continue(args: argparse.Namespace, argv: list[str] | None, e: KeyboardInterrupt) -> str:
    if not _raised(e, "videocontrast.engine.loop", "TrainingInterrupted"):
        return ""
    if args.command == "pretrain":
        again = f"videocontrast pretrain --resume --out {shlex.quote(str(args.out))}"
    else:  # demo, ablate, finetune and the supervised baseline continue their runs by themselves
        again = shlex.join(["videocontrast", *(sys.argv[1:] if argv is None else argv)])
    return f": {e.describe()}. Continue with: {again}"


if __name__ == "__main__":
    sys.exit(main())
