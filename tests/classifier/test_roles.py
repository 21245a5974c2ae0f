"""The role matrix: role x action -> allowed/denied, decided in classifier.roles only."""

from __future__ import annotations

import pytest

from classifier.roles import ACTIONS, user_can

EXPECTED = {
    "Clinician": {"view_studies", "upload"},
    "Radiologist": {"view_studies", "upload", "review"},
    "Admin": {
        "view_studies",
        "upload",
        "review",
        "manage_models",
        "start_training",
        "view_audit",
        "manage_integrations",
    },
    "none": set(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_role_matrix(role_users, role: str, action: str) -> None:
    assert user_can(role_users[role], action) is (action in EXPECTED[role])


@pytest.mark.django_db
def test_inactive_user_can_do_nothing(role_users) -> None:
    admin = role_users["Admin"]
    admin.is_active = False
    admin.save()
    assert not any(user_can(admin, action) for action in ACTIONS)


@pytest.mark.django_db
def test_setup_roles_demo_creates_one_user_per_role(capsys) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("setup_roles", "--demo", "--password", "demo-password-1")
    users = get_user_model().objects.in_bulk(["clinician", "radiologist", "admin"], field_name="username")
    assert {u.groups.get().name for u in users.values()} == {"Clinician", "Radiologist", "Admin"}
    assert users["admin"].check_password("demo-password-1")
    assert "password: demo-password-1" in capsys.readouterr().out
