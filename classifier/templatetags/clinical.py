"""Template filters for clinical values, so every page shows them the same way."""

from __future__ import annotations

from datetime import date

from django import template
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist

from classifier.services.studies import person_name

register = template.Library()


@register.filter
def person(name: str | None) -> str:
    """A person's name as the product shows it: a DICOM PN (``Doe^Jane``) read by pydicom's
    PersonName as "Doe, Jane"; other text as it is."""
    text = (name or "").strip()
    return person_name(text) if "^" in text else text


@register.filter
def age_on(birth_date: date | None, on: date | None) -> str:
    """Whole years between the dates ("" when either is missing); under 2: months."""
    if birth_date is None or on is None or on < birth_date:
        return ""
    months = (on.year - birth_date.year) * 12 + on.month - birth_date.month - (on.day < birth_date.day)
    return f"{months} mo" if months < 24 else f"{months // 12} y"


@register.filter
def requester(user: User | None) -> str:
    """Who asked: a person's username, or for an integration's service user its integration name."""
    if user is None:
        return ""
    try:
        token = user.api_token  # the reverse one-to-one of ApiToken.user
    except ObjectDoesNotExist:
        token = None
    return f"{token.name} (integration)" if token is not None else user.get_username()


@register.filter
def label_name(label: str | None) -> str:
    """A ground-truth or AI label's name ("COVID19" -> "COVID-19")."""
    from classifier.models import Label

    return str(dict(Label.choices).get(label or "", label or ""))
