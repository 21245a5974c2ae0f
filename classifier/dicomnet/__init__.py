"""The DICOM network entry point (DIMSE): the listener's SCP, a peer of the views and the API."""
