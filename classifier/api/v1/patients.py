"""Patients: list, retrieve, create (an existing MRN returns that patient with 200)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from classifier.api.base import ListApi, RetrieveApi
from classifier.api.filters import IsoDateTimeFilter
from classifier.api.idempotency import idempotent
from classifier.api.serializers import PatientInput, PatientSerializer
from classifier.http import audit_context
from classifier.models import SEX_CHOICES, Patient
from classifier.services.studies import patient_get_or_create


class PatientFilter(django_filters.FilterSet):
    mrn = django_filters.CharFilter()
    sex = django_filters.ChoiceFilter(choices=SEX_CHOICES)
    born_after = django_filters.DateFilter(field_name="birth_date", lookup_expr="gte")
    born_before = django_filters.DateFilter(field_name="birth_date", lookup_expr="lte")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Patient
        fields = ["mrn", "sex"]


class PatientListCreateApi(ListApi):
    """GET: patients, filterable and ordered; POST: create by MRN (natural key)."""

    role_actions = {"GET": "view_studies", "POST": "upload"}
    serializer_class = PatientSerializer
    filterset_class = PatientFilter
    ordering_fields = ["mrn", "created_at", "birth_date"]
    ordering = ["mrn"]

    def get_queryset(self):
        return Patient.objects.all()

    @extend_schema(
        request=PatientInput,
        responses={201: PatientSerializer, 200: OpenApiResponse(PatientSerializer, "Existing MRN.")},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = PatientInput(data=request.data)
        form.is_valid(raise_exception=True)
        patient, created = patient_get_or_create(
            actor=request.user,
            audit=audit_context(request),
            **{
                "mrn": form.validated_data["mrn"],
                "name": form.validated_data.get("name", ""),
                "birth_date": form.validated_data.get("birth_date"),
                "sex": form.validated_data.get("sex", ""),
            },
        )
        if not created:
            self.audit("api_read", patient)
        return Response(
            PatientSerializer(patient).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class PatientDetailApi(RetrieveApi):
    role_actions = {"GET": "view_studies"}
    serializer_class = PatientSerializer
    queryset = Patient.objects.all()
