"""What a provider's answer to a create-call request means, as errors (besides accepted).

Every outcome of a create-call request is one of:
- accepted: the provider returned its call id (or, for providers that return none, a 2xx);
- RateLimited: nothing was placed; retry after the given delay (the limiter handles it);
- NotDialed: the request never reached the provider (refused, DNS, TLS, connect timeout);
- Rejected: the provider refused for good, for this number or for the whole account;
- Ambiguous: the request may have placed a call (5xx, read timeout, reset): never re-sent.
"""

from __future__ import annotations

from dialer.errors import ForbiddenError, ProviderError


class RateLimited(ProviderError):
    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class NotDialed(ProviderError):
    def __init__(self, detail: str, *, unreachable: bool = False) -> None:
        super().__init__(detail)
        self.unreachable = unreachable  # the provider could not be reached (not a late send)


class Rejected(ProviderError):
    def __init__(self, detail: str, *, account_wide: bool = False, do_not_call: bool = False):
        super().__init__(detail)
        self.account_wide = account_wide
        self.do_not_call = do_not_call


class Ambiguous(ProviderError):
    pass


class Forbidden(ForbiddenError):
    """A callback that is not authentic (bad or missing signature/token)."""


class Unreadable(ValueError):
    """An authentic callback whose content is not an event we can read (a missing call id, a
    status word we do not know): stored as it came, never applied."""
