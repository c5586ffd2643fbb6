"""The `vidssl` command line: thin subcommands over the library.

Each subcommand lives in ``vidssl/commands/<name>.py`` and exposes ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args, cfg) -> int``. Heavy imports (torch, cv2) happen inside ``run`` so ``vidssl --help`` stays fast.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import traceback

from vidssl import __version__
from vidssl.commands import compare, demo_videos, eval_cmd, export, mine, pretrain, report, show_pairs, train
from vidssl.errors import VidsslError, one_line

COMMANDS = (demo_videos, mine, show_pairs, train, export, eval_cmd, pretrain, report, compare)


class _OneConfigFile(argparse.Action):
    """--config once: a second one replaced the first without a word (the paper's mine_paper.yaml then
    paper_alexnet.yaml mined with the default settings)."""

    def __call__(self, parser, namespace, values, option_string=None):
        first = getattr(namespace, self.dest, None)
        if first is not None:
            parser.error(f"--config given twice ({first}, {values}): a command reads one config file; put the keys "
                         "of both into one YAML file, or give the second's with --set SECTION.KEY=VALUE")
        setattr(namespace, self.dest, values)


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """--config and --set; ``example``: a key the command reads (its SET_EXAMPLE), since a copied train.lr=0.01 drew
    `vidssl mine`'s "does not read it" warning."""
    parser.add_argument("--config", metavar="FILE", action=_OneConfigFile,
                        help="YAML config (see configs/default.yaml); defaults otherwise")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        help=f"override one config key, e.g. --set {example} (repeatable)")


def add_verbosity_arguments(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    """-v / -q, accepted before and after the subcommand. Below the top level they default to SUPPRESS: argparse
    copies a subparser's defaults over the top level's values, which would undo `vidssl -q COMMAND`."""
    default = False if top_level else argparse.SUPPRESS
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", default=default,
                           help="debug logging and full tracebacks")
    verbosity.add_argument("-q", "--quiet", action="store_true", default=default,
                           help="warnings and errors only, no progress bars")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose "the following arguments are required" also names a flag typed that it does not
    know, and the flag meant (`vidssl eval davis --dat d --out o` was told only that --data is required); its
    subcommands' parsers are of this class too (argparse makes them of their parent's). ``typed``: the arguments as
    given, set by :func:`main` before parsing."""

    typed: tuple[str, ...] = ()

    def error(self, message: str):
        if message.startswith("the following arguments are required"):
            typed = self.typed[:self.typed.index("--")] if "--" in self.typed else self.typed
            unknown = [arg for arg in typed if arg.startswith("--")
                       and arg.split("=", 1)[0] not in self._option_string_actions]
            if unknown:
                message += f" (not a flag of {self.prog}: {_with_flag_meant(self, unknown)})"
        super().error(message)


def _with_flag_meant(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``unknown`` arguments, and the flag meant where one is close or the only one an argument begins."""
    import difflib

    flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]

    def flag_meant(arg: str) -> list[str]:
        extended = [flag for flag in flags if flag.startswith(arg)]
        return extended if len(extended) == 1 else difflib.get_close_matches(arg, flags, n=1, cutoff=0.75)

    typed = unknown[:unknown.index("--")] if "--" in unknown else unknown  # after `--`, no flag was meant
    meant = [close[0] for arg in typed if arg.startswith("--") and arg.split("=", 1)[0] not in flags
             for close in [flag_meant(arg.split("=", 1)[0])] if close]
    return " ".join(unknown) + (f" (did you mean {', '.join(dict.fromkeys(meant))}?)" if meant else "")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    below = [p for action in parser._actions if isinstance(action, argparse._SubParsersAction)
             for p in action.choices.values()]
    return [parser] + [p for sub in below for p in _parsers(sub)]


def build_parser() -> argparse.ArgumentParser:
    # no abbreviated flags: `--budget` taken for `--budget-minutes` would silently change meaning the day another
    # --budget-... flag is added; a shortened flag is an error that names the whole one (see _unrecognized)
    parser = _Parser(
        prog="vidssl", allow_abbrev=False,
        description="Learn visual representations from unlabeled video (Wang & Gupta 2015, and beyond).")
    parser.add_argument("--version", action="version", version=f"vidssl {__version__}")
    add_verbosity_arguments(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, allow_abbrev=False)
        module.add_arguments(p)
        add_verbosity_arguments(p)
        # eval's tasks take --config/--set themselves, after the task name; report and compare only read runs
        if module not in (eval_cmd, compare, report):
            add_config_arguments(p, module.SET_EXAMPLE)
        elif module is not eval_cmd:
            p.set_defaults(config=None, overrides=[])
        p.set_defaults(_module=module, _parser=p)
    return parser


def _unrecognized(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """argparse's error for arguments no parser took (exit 2), naming the flag meant where one is close or the
    only one the argument begins (a shortened flag): a mistyped flag was reported by the top-level parser, under
    `vidssl`'s usage, with no hint."""
    parser.error(f"unrecognized arguments: {_with_flag_meant(parser, unknown)}")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, under any locale
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    for each in _parsers(parser):
        each.typed = tuple(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, with its usage, not the top level's, and the flag meant
        given = list(sys.argv[1:] if argv is None else argv)
        before_command = args.command is None or given.index(unknown[0]) < given.index(args.command)
        _unrecognized(parser if before_command else args._parser, unknown)
    if args.verbose and args.quiet:  # one given before the subcommand, the other after it
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    if args.command is None:  # a usage error, as argparse's own: on stderr (`vidssl --help` is the one on stdout)
        parser.print_help(sys.stderr)
        print("vidssl: error: a command is required", file=sys.stderr)
        return 2
    # the name errors are printed under: `vidssl eval flow`, as the user typed it, not `vidssl eval`
    command = " ".join(part for part in (args.command, getattr(args, "task", None)) if part)
    terminated = []

    def on_sigterm(signum, frame):  # `timeout`, a batch scheduler's preemption, `docker stop`
        terminated.append(signum)
        if len(terminated) == 1:  # a second one (a script's retry, a group's signal relayed) must not cut short
            # the clean-up the first began (mining takes back its videos' starts); SIGKILL still stops it at once
            raise KeyboardInterrupt  # the same clean stop as Ctrl-C: a video being mined is not taken for a crash

    # not in a thread (signals are the main thread's), nor where whoever started it chose to ignore SIGTERM
    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN else None
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # any command under torchrun (mining shards too, not only training): a `kill -9` of torchrun left its ranks
        # running, orphaned, holding their folders' locks against the rerun
        from vidssl.lifeline import exit_with_launcher

        exit_with_launcher()
    package_log = logging.getLogger("vidssl")
    saved_level = package_log.level
    if command == "train" and not args.verbose and _torchrun_rank() > 0:
        # the other ranks of a torchrun training: rank 0 says it once, errors all (a mining shard under torchrun
        # mines videos of its own, and keeps its say)
        package_log.setLevel(logging.ERROR)
    try:  # from the first import on: a Ctrl-C while numpy loads (a fraction of a second) printed a traceback
        from vidssl.config import load_config
        from vidssl.video import decoder_logs_silenced

        # with -v the decoders' own FFmpeg lines stay: they can help with a damaged file
        quiet_decoders = contextlib.nullcontext() if args.verbose else decoder_logs_silenced()

        cfg = load_config(args.config, args.overrides)
        _warn_unread(args, command)
        with quiet_decoders:
            return int(args._module.run(args, cfg) or 0)
    except VidsslError as e:
        if args.verbose:  # the traceback, and still the documented exit code (2: a config error)
            traceback.print_exc()
        print(f"vidssl {command}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError as e:
        if not _stdout_closed():  # another pipe (a worker's): an error like any other
            if args.verbose:
                traceback.print_exc()
            print(f"vidssl {command}: error: {os_error_text(e)}", file=sys.stderr)
            return 1
        # `vidssl ... | head`: the reader has what it wanted; what was run is finished or resumable
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return 141  # what a shell reports for a writer stopped by SIGPIPE
    except OSError as e:  # a full disk, a missing permission, a file where a folder belongs: the user's to fix
        if args.verbose:
            traceback.print_exc()
        print(f"vidssl {command}: error: {os_error_text(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = "terminated" if terminated else "interrupted"
        print(f"vidssl {command}: {what}; rerun the same command to continue", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        package_log.setLevel(saved_level)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _torchrun_rank() -> int:
    """This process's RANK under torchrun (0 without it, or where it is no number: the trainer says so)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _warn_unread(args, command: str) -> None:
    """A warning for each ``--set`` the command does not read (``READS`` of its module: its config sections and
    keys; none: all of them): `vidssl export RUN --out b.pt --set model.arch=resnet50` did nothing without a word.
    A --config file may hold every section (configs/default.yaml, a run's config.yaml): not judged."""
    reads = getattr(getattr(args, "_task", None) or args._module, "READS", None)
    if reads is None:
        return
    from vidssl.config import flat_dict, parse_override

    for text in args.overrides:
        parts, value = parse_override(text)
        key = ".".join(parts)
        # a section set whole (`--set 'eval={davis: {topk: 5}}'`) is judged by its keys: the davis ones are read
        keys = [f"{key}.{leaf}" for leaf in flat_dict(value)] if isinstance(value, dict) else [key]
        for key in keys:
            if not any(key == r or key.startswith(r + ".") for r in reads):
                logging.getLogger("vidssl").warning("--set %s: `vidssl %s` does not read it (it reads %s); it has no "
                                                    "effect here", key, command, ", ".join(reads))


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone (poll reports an error on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return True  # the error was about a pipe, and stdout's is the one a user pipes


def os_error_text(e: OSError) -> str:
    """``"<what went wrong>: <path>"`` (both paths of a rename); the plain message when the error names no path.
    Too many open files also says how to raise the limit, which such an error does not name."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    text = f"{e.strerror}: {' -> '.join(paths)}" if paths and e.strerror else str(e)
    if e.errno == errno.EMFILE:
        text += "; " + _open_files_advice()
    elif e.errno == errno.ENFILE:
        text += "; the system's table of open files is full: close other programs or raise fs.file-max"
    return text


def _open_files_advice() -> str:
    """How to get past this process's limit of open files: twice it where the hard limit allows."""
    try:
        import resource  # Unix only
    except ImportError:
        return "use fewer worker processes"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    more = 2 * soft if hard == resource.RLIM_INFINITY else min(2 * soft, hard)
    raise_it = f"raise the limit (`ulimit -n {more}`) or " if more > soft else ""
    return f"this process may open {soft} files: {raise_it}use fewer worker processes"


if __name__ == "__main__":
    sys.exit(main())
