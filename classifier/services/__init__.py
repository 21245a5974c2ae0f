"""Writes of the clinical domain, one module per concept (HackSoft's services).

Each service takes keyword-only domain arguments, validates before it writes, records
an audit event, and raises ``ServiceError`` for a refusal; side effects (tasks) are
sent after commit.
"""
