"""REST API for hospital systems (DRF), DICOMweb STOW-RS and FHIR R4 views."""
