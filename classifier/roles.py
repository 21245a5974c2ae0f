"""Roles and what each may do: the one place where access is decided.

Views use :func:`action_required`, the API uses :class:`ActionPermission`, templates use
the ``can`` context. Each action maps to one Django permission; groups carry them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

CLINICIAN, RADIOLOGIST, ADMIN = "Clinician", "Radiologist", "Admin"

# action -> "app_label.codename"
ACTIONS: dict[str, str] = {
    "view_studies": "classifier.view_study",
    "upload": "classifier.upload_study",
    "review": "classifier.review_prediction",
    "manage_models": "training.manage_models",
    "start_training": "training.start_training",
    "view_audit": "classifier.view_auditevent",
    "manage_integrations": "classifier.manage_integrations",
}

_CLINICIAN_PERMS = [
    "classifier.view_patient",
    "classifier.add_patient",
    "classifier.view_study",
    "classifier.add_study",
    "classifier.upload_study",
    "classifier.view_image",
    "classifier.add_image",
    "classifier.view_prediction",
    "classifier.view_review",
]
_RADIOLOGIST_PERMS = [*_CLINICIAN_PERMS, "classifier.review_prediction", "classifier.add_review"]
_ADMIN_PERMS = [
    *_RADIOLOGIST_PERMS,
    "training.manage_models",
    "training.view_modelversion",
    "training.start_training",
    "training.view_trainingrun",
    "training.add_trainingrun",
    "training.view_dataset",
    "classifier.view_auditevent",
    "classifier.manage_integrations",
]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    CLINICIAN: _CLINICIAN_PERMS,
    RADIOLOGIST: _RADIOLOGIST_PERMS,
    ADMIN: _ADMIN_PERMS,
}


def user_can(user: Any, action: str) -> bool:
    """Whether ``user`` (a User, an AnonymousUser or None-like request user) may perform
    ``action`` (a key of ACTIONS). Unknown actions raise KeyError."""
    permission = ACTIONS[action]
    return bool(user.is_authenticated and user.is_active and user.has_perm(permission))


def action_required(action: str) -> Callable:
    """View decorator: anonymous -> login page; authenticated without the right -> 403 page."""
    ACTIONS[action]  # fail at import time on a typo

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_can(request.user, action):
                raise PermissionDenied(f"Your role does not allow this ({action.replace('_', ' ')}).")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def role_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: ``can.<action>`` booleans and the user's role names."""
    user = getattr(request, "user", AnonymousUser())
    return {
        "can": {action: user_can(user, action) for action in ACTIONS},
        "user_roles": list(user.groups.values_list("name", flat=True)) if user.is_authenticated else [],
    }


def ensure_roles() -> dict[str, Group]:
    """Create or update the three groups with exactly their permissions. Idempotent."""
    groups = {}
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = [_permission(name) for name in names]
        group.permissions.set(perms)
        groups[role] = group
    return groups


def _permission(dotted: str) -> Permission:
    app_label, codename = dotted.split(".", 1)
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)
