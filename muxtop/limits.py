"""The process's open-file limit: raise the soft RLIMIT_NOFILE as far as the hard one allows."""

from __future__ import annotations

import resource


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` (never past the hard limit); return the
    (soft, hard) limits now in force. Falling short is not an error here: callers say what it
    means for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass  # keep the old limit
    return soft, hard
