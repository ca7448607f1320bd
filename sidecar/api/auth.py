"""Bearer tokens and scopes for every ``/v1`` route: 401 without a known token, 403 without the scope."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from sidecar.api.context import current_runtime
from sidecar.errors import Forbidden, Unauthorized
from sidecar.tokens import Token, TokenFile

F = TypeVar("F", bound=Callable[..., Any])


def authorize(tokens: TokenFile, header: str | None, scope: str) -> Token:
    kind, _, presented = (header or "").partition(" ")
    presented = presented.strip()
    if kind.lower() != "bearer" or not presented:
        raise Unauthorized("a bearer token is required")
    token = tokens.authenticate(presented)
    if token is None:
        raise Unauthorized("unknown token")
    if scope not in token.scopes:
        raise Forbidden(f"this token lacks the {scope!r} scope", scope=scope)
    return token


def require_scope(scope: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = authorize(current_runtime().tokens, request.headers.get("Authorization"), scope)
            g.token_name = token.name
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature

    return decorate
