"""DRF permission that asks ``classifier.roles.user_can``: roles are decided there only.

Each API view declares ``role_actions``: HTTP method -> action name (a key of roles.ACTIONS);
``"*"`` is the fallback for methods not listed. A method with no action is refused.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from classifier.roles import user_can


class ActionPermission(permissions.BasePermission):
    """Allow a request when its user may perform the view's action for that method."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF turns this into 401 with the authenticator's challenge
        actions: dict[str, str] = getattr(view, "role_actions", {})
        method = "GET" if request.method in ("HEAD", "OPTIONS") else str(request.method)
        action = actions.get(method) or actions.get("*")
        if action is None:
            return False
        if not user_can(request.user, action):
            self.message = f"Your role does not allow this ({action.replace('_', ' ')})."
            return False
        return True
