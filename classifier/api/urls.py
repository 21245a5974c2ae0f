"""API routes (filled in by the API work: /api/v1/, /api/schema/, /dicomweb/, /fhir/)."""
urlpatterns: list = []
