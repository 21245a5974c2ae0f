"""Loaded before Django settings: keep test runs out of the developer's var/ directory."""
import os
import tempfile

os.environ.setdefault("CXR_VAR_DIR", tempfile.mkdtemp(prefix="cxr-test-var-"))
