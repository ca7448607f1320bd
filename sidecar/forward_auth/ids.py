"""The id rule shared by forward-auth: 1-64 characters from ``[A-Za-z0-9._-]``.

``is_valid_id`` uses ``fullmatch`` on purpose: ``re.match(r"^...$")`` would also accept a
value with one trailing newline (``$`` matches before a final ``\\n``). Pure; imports nothing.
"""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a string of 1-64 characters from ``[A-Za-z0-9._-]``."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
