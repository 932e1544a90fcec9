"""`artconv serve`: a local web studio on the engines (style, dream, features).

`studio` keeps one queue of batch jobs run a job at a time on one kept network (or on Ray
workers: `runner`), built on small parts: `folder` (uploads, served files, results, the
gallery and the queue file), `forms` (what a page may send), `planning` (jobs from it),
`jobs` (a job and a sweep as the page sees them), `previews` (JPEG pictures of a running
job), `sweeps` (contact sheets) and `events` (the one stream of changes to the page).
`app` is the FastAPI application (with `security`: token, origins, body sizes) serving the
page in `static/`. Nothing here is imported by the CLI until `artconv serve` runs (FastAPI
and torch load only then).
"""
