"""Reads of the clinical domain, one module per concept (HackSoft's selectors).

No writes and no request objects: pages, the API, exports and the workers call these,
so a rule such as "the latest prediction" or "is this study flagged" has one home.
"""
