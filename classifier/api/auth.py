"""Authentication and throttling for integrations: ``Authorization: Bearer cxr_...``.

A token authenticates as its dedicated service user, so permissions (roles.user_can),
audit (actor) and idempotency (scoped by user) need nothing token-specific. Browsers use
the session instead (SessionAuthentication, with its CSRF check).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request

from classifier.integrations import ApiToken
from classifier.services.tokens import TOKEN_PREFIX, token_hash

DEFAULT_RATES = {"api_token": "600/min", "api_user": "600/min"}
# last_used_at is written at most this often per token, so a busy token costs no write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>`` (``Token <token>`` is accepted too)."""

    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2 or not header[1].startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("Malformed API token.", code="invalid_token")
        token = ApiToken.objects.select_related("user").filter(token_hash=token_hash(header[1])).first()
        now = timezone.now()
        if token is None or token.is_revoked or (token.expires_at and token.expires_at <= now):
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.", code="invalid_token")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.", code="invalid_token")
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated calls.
        return 'Bearer realm="api"'


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """The browser session, with DRF's CSRF enforcement; named for the schema."""

    def enforce_csrf(self, request: Request) -> None:
        """Check CSRF on the Django request, not DRF's.

        The check reads ``request.POST`` for a form token. On DRF's Request that parses the
        body with the view's parsers, so an unsupported body answered 415 before the role
        was checked (and a parse failure left the view with empty data). Django's request
        parses only form bodies and is empty otherwise; the view parses after the role check.
        """
        try:
            super().enforce_csrf(request._request)  # type: ignore[arg-type]  # passed on to CsrfViewMiddleware
        except MultiPartParserError as exc:
            raise exceptions.ParseError(f"Malformed multipart body: {exc}") from None


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """One bucket per API token (rate from the token or the ``api_token`` scope), else per user.

    Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] when set there, so operators
    tune them in settings; the built-in defaults keep the API throttled without any.
    Counters of authenticated callers live in the "shared" cache (Redis, or the database
    on the embedded default), so every web process counts against one bucket. Anonymous
    requests only reach the public schema and docs (permissions run before throttles), and
    are counted per process.
    """

    def __init__(self) -> None:  # the rate depends on the request, so it is resolved in allow_request
        pass

    def _rate_for(self, scope: str) -> str:
        configured = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_THROTTLE_RATES") or {}
        return configured.get(scope) or DEFAULT_RATES[scope]

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        self.scope = "api_token" if token is not None else "api_user"
        self.rate = (token.rate if token is not None and token.rate else None) or self._rate_for(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        authenticated = token is not None or bool(request.user and request.user.is_authenticated)
        self.cache = caches["shared" if authenticated else "default"]
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"anon-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "classifier.api.auth.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "cxr_<random>",
            "description": "An integration token created by an administrator (shown once).",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "classifier.api.auth.CsrfSessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
