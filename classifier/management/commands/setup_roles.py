"""Create the Clinician, Radiologist and Admin groups; optionally one demo user per role."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from classifier.roles import ADMIN, CLINICIAN, RADIOLOGIST, ensure_roles

DEMO_USERS = {"clinician": CLINICIAN, "radiologist": RADIOLOGIST, "admin": ADMIN}


class Command(BaseCommand):
    help = "Create role groups with their permissions; --demo also creates one user per role."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--demo", action="store_true", help="Create demo users and print their passwords.")
        parser.add_argument("--password", help="Demo password (default: random, or kept if users exist).")

    def handle(self, *args: Any, demo: bool = False, password: str | None = None, **options: Any) -> None:
        groups = ensure_roles()
        self.stdout.write(f"roles: {', '.join(groups)}")
        if not demo:
            return
        users = get_user_model()
        for username, role in DEMO_USERS.items():
            user, created = users.objects.get_or_create(username=username)
            if created or password:
                secret = password or secrets.token_urlsafe(9)
                user.set_password(secret)
                user.is_staff = role == ADMIN
                user.save()
                shown = secret
            else:
                shown = "(unchanged; pass --password to reset)"
            user.groups.set([groups[role]])
            self.stdout.write(f"  {role:<12} login: {username:<12} password: {shown}")
