"""User-facing errors. The CLI prints their message, one line (a line per key for several unknown config keys), a
traceback only with -v, and exits non-zero."""
import shlex


class VidsslError(Exception):
    """Base class of every error caused by user input (files, config, arguments), not by a bug."""

    exit_code = 1


def shell_arg(value: object) -> str:
    """``value`` (a path) as one argument of a command a message gives the user to paste: quoted where a shell
    would split or expand it (a folder with a space, or a downloaded one named with `;` or `$(...)`)."""
    return shlex.quote(str(value))


def one_line(error: BaseException) -> str:
    """``error``'s own message. torch's DataLoader re-raises a worker's error with the worker's traceback as its text
    ("Caught VidsslError in DataLoader worker process 0.", "Original Traceback ...", ..., "<class>: <message>"):
    its last line, less the class, is the message."""
    text = str(error)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


class ConfigError(VidsslError, ValueError):
    """An unknown key, a wrong type or a malformed override; the message names the key and the valid ones."""

    exit_code = 2


class UsageError(VidsslError):
    """Arguments that do not go together (argparse's own errors exit 2 too)."""

    exit_code = 2


class VideoError(VidsslError):
    """A video that cannot be used; the message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class CorruptVideo(VideoError):
    """The container or the stream is damaged (truncated, garbage bytes, undecodable frames)."""


class UnsupportedVideo(VideoError):
    """Not a video this tool can read (an image, a text file, a directory, no permission, no video stream)."""


class NoVideoStream(UnsupportedVideo):
    """A media file whose container parses but holds no video stream (audio only, subtitles)."""


class EmptyVideo(VideoError):
    """A valid or zero-byte file that yields no frames."""
