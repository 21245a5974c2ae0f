"""DICOM de-identification after PS3.15 Annex E, Basic Application Level
Confidentiality Profile (no retain options).

Actions: identifying attributes of the profile's table are removed (X) or emptied
(Z, for type 2 attributes a reader expects); every person name and every date/time
anywhere (also in sequences) is emptied, so no date survives; private tags, curves,
overlays and icon images are removed; every instance-specific UID is replaced by
``generate_uid(entropy_srcs=[salt, uid])``, so one salt maps a UID to the same new
UID in every file (studies and series stay linked) while the original cannot be
recovered without the salt. Well-known UIDs (SOP classes, transfer syntaxes) are kept.
The pixel data is untouched: burned-in text is out of scope here.
"""
from __future__ import annotations

import copy
import hashlib
import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from .limits import DecodeLimits

__all__ = ["deidentify", "deidentify_bytes", "pseudonymise_uid", "METHOD"]

METHOD = "PS3.15 E.1.1 Basic Application Level Confidentiality Profile (cxr-triage deid v1)"
EMPTY = (  # Z: type 2, kept present but empty (PatientID gets a pseudonym instead)
    "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
)
REMOVE = tuple("""
AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionDeviceProcessingDescription AcquisitionTime ActualHumanPerformersSequence
AdditionalPatientHistory AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
AdmittingDiagnosesDescription AdmittingTime Allergies AuthorObserverSequence BranchOfService
CommentsOnThePerformedProcedureStep ConfidentialityConstraintOnPatientDataDescription
ContentCreatorName ContentCreatorIdentificationCodeSequence ContributionDescription
CountryOfResidence CurrentPatientLocation CustodialOrganizationSequence DataSetTrailingPadding
DerivationDescription DetectorID DeviceSerialNumber DigitalSignaturesSequence
DischargeDiagnosisDescription DistributionAddress DistributionName EthnicGroup FrameComments
GantryID GeneratorID HumanPerformerName HumanPerformerOrganization IconImageSequence
IdentifyingComments ImageComments ImagePresentationComments ImagingServiceRequestComments
InstanceCreationDate InstanceCreationTime InstitutionAddress InstitutionCodeSequence
InstitutionName InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence
InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription
InterpretationIDIssuer InterpretationRecorder InterpretationText InterpretationTranscriber
IssuerOfAdmissionID IssuerOfPatientID MedicalAlerts MedicalRecordLocator MilitaryRank
ModifiedAttributesSequence ModifyingDeviceID ModifyingDeviceManufacturer
NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults Occupation
OperatorIdentificationSequence OperatorsName OriginalAttributesSequence OrderCallbackPhoneNumber
OrderEnteredBy OrderEntererLocation OtherPatientIDs OtherPatientIDsSequence OtherPatientNames
ParticipantSequence PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments
PatientInstitutionResidence PatientInsurancePlanCodeSequence PatientMotherBirthName
PatientPrimaryLanguageCodeSequence PatientReligiousPreference PatientSexNeutered PatientSize
PatientState PatientTelephoneNumbers PatientTransportArrangements PatientWeight
PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepEndDate
PerformedProcedureStepEndTime PerformedProcedureStepID PerformedProcedureStepStartDate
PerformedProcedureStepStartTime PerformedStationAETitle
PerformedStationGeographicLocationCodeSequence PerformedStationName
PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
PerformingPhysicianName PersonAddress PersonIdentificationCodeSequence PersonName
PersonTelephoneNumbers PhysicianApprovingInterpretation PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence PlateID
PreMedication PregnancyStatus ProtocolName ReasonForTheImagingServiceRequest ReasonForStudy
ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence ReferencedPatientSequence
ReferencedSOPInstanceMACSequence ReferringPhysicianAddress
ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers RegionOfResidence
RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
RequestedProcedureDescription RequestedProcedureID RequestedProcedureLocation
RequestingPhysician RequestingService ResponsibleOrganization ResponsiblePerson ResultsComments
ResultsDistributionListSequence ResultsIDIssuer ScheduledHumanPerformersSequence
ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
ScheduledPerformingPhysicianName ScheduledProcedureStepDescription
ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime ScheduledProcedureStepLocation
ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime ScheduledStationAETitle
ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID
SmokingStatus SourceImageSequence SpecialNeeds StationName StudyComments StudyDescription
StudyIDIssuer TextComments TextString TimezoneOffsetFromUTC TopicAuthor TopicKeywords
TopicSubject TopicTitle VerifyingObserverIdentificationCodeSequence VerifyingObserverName
VerifyingObserverSequence VerifyingOrganization VisitComments
""".split())
_KEEP_UIDS = frozenset({"SOPClassUID", "ReferencedSOPClassUID", "TransferSyntaxUID",
                        "MediaStorageSOPClassUID", "ImplementationClassUID", "CodingSchemeUID",
                        "ContextGroupExtensionCreatorUID", "MappingResourceUID"})
_BLANK_VRS = frozenset({"PN", "DA", "DT", "TM"})


def pseudonymise_uid(uid: str, salt: str) -> str:
    """Deterministic replacement UID for ``uid`` under ``salt`` (pydicom root, 64 chars max)."""
    return str(generate_uid(entropy_srcs=[salt, str(uid)]))


def _is_well_known(uid: str) -> bool:
    return UID(uid).name != uid  # registered in the DICOM standard's UID table


def _clean(ds: Dataset, salt: str) -> None:
    """Apply the profile in place to ``ds`` and, recursively, every sequence item."""
    ds.remove_private_tags()
    for keyword in REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if (t.group & 0xFF00) in (0x5000, 0x6000)]:
        del ds[tag]  # curves and overlays may hold burned-in identifying text
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _clean(item, salt)
        elif elem.VR in _BLANK_VRS:
            elem.value = ""
        elif elem.VR == "UI" and elem.keyword not in _KEEP_UIDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [v if _is_well_known(v) else pseudonymise_uid(v, salt) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]


def _pseudonym(value: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}\x00{value}".encode("utf-8")).hexdigest()
    return f"ANON-{digest[:16].upper()}"


def deidentify(ds: Dataset, *, salt: str) -> Dataset:
    """Return a de-identified deep copy of ``ds``; ``ds`` itself is not modified.

    ``salt`` must be secret and non-empty: it keys both UID replacement and the
    PatientID pseudonym, so the same patient/study maps consistently per salt.
    """
    if not salt:
        raise ValueError("a non-empty salt is required")
    out = copy.deepcopy(ds)
    patient_id = str(out.get("PatientID", "") or "")
    _clean(out, salt)
    for keyword in EMPTY:
        setattr(out, keyword, "")
    out.PatientID = _pseudonym(patient_id, salt) if patient_id else ""
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = Sequence([code])
    _fix_file_meta(out)
    return out


def _fix_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.preamble = b"\x00" * 128  # never carry the source preamble (it can hide code)


def deidentify_bytes(data: bytes, *, salt: str, limits: DecodeLimits | None = None) -> bytes:
    """Parse (with the decoder's safety checks), de-identify and re-encode a DICOM file.

    Raises an ImagingError subclass when the bytes are not a safe, readable DICOM.
    """
    from .dicom import read_dataset
    from .limits import DEFAULT_LIMITS

    ds = read_dataset(data, limits or DEFAULT_LIMITS)
    clean = deidentify(ds, salt=salt)
    buffer = io.BytesIO()
    clean.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
