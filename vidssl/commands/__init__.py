"""The subcommands, one module each (NAME, HELP, add_arguments, run); what several of them check is here."""
from __future__ import annotations


def check_out_folder(out, flag: str = "--out", given=None) -> None:
    """Refuse an output folder ``out`` that cannot be made or written (a file, or under one; read-only; no
    permission), naming ``flag`` as typed, before any work: mkdir's "File exists" or a marker's "Not a directory"
    deep in the run said neither which argument nor what to do. ``given``: the argument as typed, where ``out`` is
    the folder it names (an image's). Creates nothing."""
    import os

    from vidssl.errors import UsageError

    existing = os.path.abspath(out)
    out = out if given is None else given
    if os.path.islink(existing) and not os.path.exists(existing):  # made at the end, where mkdir fails on it
        raise UsageError(f"{flag} {out}: a link to a missing folder ({os.readlink(existing)}); choose another {flag}")
    while not os.path.lexists(existing):  # the folders the command would make: writable where the nearest one is
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {out}: {existing} is a file, not a folder; choose another {flag}")
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:  # cannot tell: writing says it
        read_only = False
    if read_only:  # said so, rather than "no permission" and a chmod that cannot help
        raise UsageError(f"{flag} {out}: {existing} is on a read-only file system; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {out}: no permission to write in {existing}; choose another {flag} (or chmod u+wx "
                         f"{existing})")
