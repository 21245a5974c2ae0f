"""Forms of the clinical pages: validation of what people type, before any service call."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef

from classifier.models import SEX_CHOICES, Label, Review, Study
from classifier.selectors.audit import AuditFilters
from classifier.selectors.worklist import SORTS, WorklistFilters
from classifier.services.studies import StudyFields

_YES_NO = [("", "Any"), ("yes", "Yes"), ("no", "No")]


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


class WorklistFilterForm(forms.Form):
    """GET filters of the worklist; invalid values are ignored rather than refused."""

    q = forms.CharField(required=False, label="MRN or accession", max_length=64)
    status = forms.ChoiceField(required=False, choices=[("", "Any"), *Study.Status.choices])
    flag = forms.ChoiceField(
        required=False, label="AI flag", choices=[("", "Any"), ("yes", "Flagged"), ("no", "Not flagged")]
    )
    reviewed = forms.ChoiceField(required=False, choices=_YES_NO)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    clinician = forms.ModelChoiceField(
        required=False, label="Requesting clinician", empty_label="Anyone", queryset=get_user_model().objects.none()
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only people who have requested studies: a short list, and no user directory leak.
        self.fields["clinician"].queryset = (  # type: ignore[attr-defined]  # a ModelChoiceField
            # EXISTS per user (the requesting_clinician index), not a DISTINCT over a join
            # with every study.
            get_user_model()
            .objects.filter(Exists(Study.objects.filter(requesting_clinician=OuterRef("pk"))))
            .order_by("username")
        )

    sort = forms.ChoiceField(
        required=False,
        widget=forms.HiddenInput,
        choices=[("", "")] + [(f"{sign}{key}", key) for key in SORTS for sign in ("", "-")],
    )

    def to_filters(self) -> WorklistFilters:
        if not self.is_bound:
            return WorklistFilters()
        self.is_valid()  # invalid fields drop out of cleaned_data; the valid ones still filter
        data = self.cleaned_data
        clinician = data.get("clinician")
        return WorklistFilters(
            status=data.get("status") or "",
            flag=_yes_no(data.get("flag") or ""),
            reviewed=_yes_no(data.get("reviewed") or ""),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            clinician=clinician.pk if clinician else None,
            q=(data.get("q") or "").strip(),
            sort=data.get("sort") or "",
        )


class StudyFieldsForm(forms.Form):
    """Patient and study fields typed at upload. MRN and accession may come from DICOM headers,
    so they are optional here; the upload service names them when neither source has them."""

    mrn = forms.CharField(label="Patient MRN", max_length=64, required=False)
    patient_name = forms.CharField(label="Patient name", max_length=200, required=False)
    birth_date = forms.DateField(label="Birth date", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sex = forms.ChoiceField(required=False, choices=[("", "—"), *SEX_CHOICES])
    accession_number = forms.CharField(label="Accession number", max_length=64, required=False)
    view_position = forms.ChoiceField(
        label="View position",
        required=False,
        choices=[("", "From file / unknown")] + [c for c in Study.View.choices if c[0] != Study.View.UNKNOWN],
    )
    clinical_notes = forms.CharField(
        label="Clinical notes",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Symptoms and the clinical question.",
    )
    # Set by the page after the person confirmed a known MRN whose stored name differs.
    patient_confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def to_fields(self) -> StudyFields:
        data = self.cleaned_data
        return StudyFields(
            mrn=data["mrn"].strip(),
            patient_name=data["patient_name"].strip(),
            birth_date=data["birth_date"],
            sex=data["sex"],
            accession_number=data["accession_number"].strip(),
            view_position=data["view_position"],
            clinical_notes=data["clinical_notes"].strip(),
            patient_confirmed=bool(data.get("patient_confirmed")),
        )


class ReviewForm(forms.Form):
    """A radiologist's confirm/correct of one prediction."""

    prediction = forms.IntegerField(widget=forms.HiddenInput)
    decision = forms.ChoiceField(choices=Review.Decision.choices, widget=forms.RadioSelect)
    label = forms.ChoiceField(
        required=False, choices=[("", "—"), *Label.choices], help_text="Required when correcting."
    )
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("decision") == Review.Decision.CORRECT and not data.get("label"):
            self.add_error("label", "Choose the correct label.")
        return data


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    user = forms.CharField(required=False, label="User", max_length=150)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "Any")] + [(a, a) for a in actions]  # type: ignore[attr-defined]

    def to_filters(self) -> AuditFilters:
        if not self.is_bound:
            return AuditFilters()
        self.is_valid()
        data = self.cleaned_data
        return AuditFilters(
            action=data.get("action") or "",
            user=(data.get("user") or "").strip(),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )
