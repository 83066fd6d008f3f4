"""One error hierarchy, rooted in DialerError and tied to no framework.

What an error means is its type, never its text: the CLI maps types to exit codes in one place
(cli.exit_code_of), the web apps map them to HTTP statuses in one place (http_status_of).

    DialerError                      exit 1   500
    ├── ConfigError                  exit 2   500  a file the user must fix
    ├── InputError                   exit 2   400  bad data or arguments
    │   ├── NotFoundError            exit 2   404  no such campaign (or other named thing)
    │   ├── BodyError                exit 2   400  a request body that does not parse
    │   ├── InvalidFields            exit 2   422  values that break a rule, each named
    │   ├── TooLargeError            exit 2   413  a request body over its limit
    │   ├── StalledError             exit 2   408  a request body that stopped arriving
    │   └── MediaTypeError           exit 2   415  a body of a type the endpoint does not read
    ├── ConflictError                exit 2   409  the state does not allow it
    ├── ForbiddenError               exit 1   403  not authentic (a callback's token/signature)
    └── ProviderError                exit 1   502  a provider's answer (providers.base: rate
                                                   limited, not dialed, rejected, ambiguous)
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class DialerError(Exception):
    """Base of every error reported as a one-line message instead of a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DialerError):
    """Bad configuration or campaign file: the user must fix a file."""


class InputError(DialerError):
    """Bad input data or arguments: missing file, unknown column, undecodable bytes."""


class NotFoundError(InputError):
    """A named thing (a campaign) does not exist."""


class BodyError(InputError, ValueError):
    """A request body that does not parse as the content type it claims."""


class InvalidFields(InputError):
    """Values that break a rule; `fields` names each one at fault: (field or row, message)."""

    def __init__(self, message: str, fields: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


class TooLargeError(InputError):
    """A request body over its limit."""


class StalledError(InputError):
    """A request body that stopped arriving (nothing for a while)."""


class MediaTypeError(InputError):
    """A request body of a content type the endpoint does not read."""


class ConflictError(DialerError):
    """The database's state does not allow the request, e.g. changing a campaign that dialed."""


class ForbiddenError(DialerError):
    """A request that is not authentic (bad or missing signature or token)."""


class ProviderError(DialerError):
    """Base of the providers' create-call failures; `detail` never contains credentials."""

    @property
    def detail(self) -> str:
        return self.message

    @detail.setter
    def detail(self, value: str) -> None:
        self.message = value
        self.args = (value,)


_EXIT_CODES: tuple[tuple[type[DialerError], int], ...] = (
    (ConfigError, 2),
    (InputError, 2),
    (ConflictError, 2),
)

_HTTP_STATUSES: tuple[tuple[type[DialerError], int], ...] = (
    (NotFoundError, 404),
    (InvalidFields, 422),
    (TooLargeError, 413),
    (StalledError, 408),
    (MediaTypeError, 415),
    (InputError, 400),
    (ConflictError, 409),
    (ForbiddenError, 403),
    (ProviderError, 502),
)


def exit_code_of(error: DialerError) -> int:
    """The exit code a cron job sees for `error`: 2 for what the user must fix, else 1."""
    return next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), 1)


def http_status_of(error: DialerError) -> int:
    """The HTTP status a web client sees for `error`."""
    return next((status for kind, status in _HTTP_STATUSES if isinstance(error, kind)), 500)


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a full disk, a quota, a file size limit


@contextmanager
def naming_a_full_disk(where: str) -> Iterator[None]:
    """A write inside that finds no room ends the command with one line naming `where` (a
    file, the temporary folder), not a traceback. Other OS errors pass as they are."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            raise
        raise DialerError(f"cannot write {where}: {exc.strerror}") from None


def the_temporary_folder(also: str = "") -> str:
    """`where` for naming_a_full_disk when the file is a temporary one: the folder it is in,
    and how to choose another (`also`: another way out, as ", or give --out")."""
    return f"the temporary folder {tempfile.gettempdir()} (set TMPDIR to one with room{also})"
