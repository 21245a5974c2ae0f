"""Server-rendered pages, one module per page: parse, call a selector or service, render."""
