"""`artconv serve`: a local web studio on the engines (style, dream, features).

`artconv.web.studio` keeps the studio folder, the uploads and one queue of batch jobs run a
job at a time on one kept network (or on Ray workers: `artconv.web.runner`);
`artconv.web.app` is the FastAPI application (token check, uploads, server-sent events)
that serves the page in `static/`. Neither module is imported by the CLI until
`artconv serve` runs (FastAPI and torch load only then).
"""
