"""The aiohttp views on the worker's port: ``server`` (the SMS webhook, and
where every view is attached), ``api`` (the management API) and ``openapi``
(its document), ``health`` (what ``/health`` answers), the dashboard (``dashboard``, ``pages`` with the Jinja2
templates in ``templates/``, ``guard`` for sign-in and CSRF, ``charts``).
Each view reads only what it needs through the typed keys of ``appkeys``."""
