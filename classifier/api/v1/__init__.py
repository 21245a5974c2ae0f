"""REST API v1 for hospital systems: one module per resource."""
