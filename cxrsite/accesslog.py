"""gunicorn's access log without patient identifiers (``logger_class`` in gunicorn.conf.py).

Query strings carry MRNs and names (``/?q=``, ``?PatientID=``, ``?mrn=``), in the request
line and in the Referer of the next request. Every query value is replaced by ``-``
unless its parameter is one that never identifies anyone (paging, sorting, status
filters); the parameter names stay, so the log still says what was asked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from gunicorn.glogging import Logger

SAFE_PARAMETERS = frozenset(
    {"page", "page_size", "limit", "offset", "sort", "ordering", "status", "flag", "reviewed", "format", "action"}
)
REDACTED = "-"


def redact_query(query: str) -> str:
    """``query`` with every value outside SAFE_PARAMETERS replaced by ``-``."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(
        f"{quote(name, safe='')}={quote(value, safe='') if name in SAFE_PARAMETERS else REDACTED}"
        for name, value in pairs
    )


def redact_url(url: str) -> str:
    """A path or URL with its query redacted (fragments dropped)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, redact_query(parts.query), ""))


class RedactingLogger(Logger):
    """Redacts the query in the request line (``%(r)s``), ``%(q)s``, the Referer
    (``%(f)s``, ``%({referer}i)s``) and the raw URI; everything else as gunicorn logs it."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        raw = redact_url(environ.get("RAW_URI") or "")
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {raw} {environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = redact_query(environ.get("QUERY_STRING") or "")
        if atoms.get("f") not in (None, "-"):
            atoms["f"] = redact_url(atoms["f"])
        if "{referer}i" in atoms:
            atoms["{referer}i"] = redact_url(atoms["{referer}i"])
        return atoms
