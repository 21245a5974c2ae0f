"""Filter fields that refuse values the database cannot hold (400, never a database error)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

MAX_OFFSET = timedelta(hours=14)  # the widest real UTC offset; PostgreSQL refuses some larger ones


class BoundedIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        try:
            parsed = super().to_python(value)
        except OverflowError:
            raise forms.ValidationError("Date out of range.") from None
        if parsed is None:
            return None
        offset = parsed.utcoffset()
        if offset is not None and abs(offset) > MAX_OFFSET:
            raise forms.ValidationError("UTC offset out of range.")
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("Date out of range.") from None
        return parsed


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField
