"""The JSON API (``xdr-edge api serve``): HTTPS calls for integration engines that cannot call Python.

Calls in the style ``PracticeSave`` (POST, JSON in and out) with an ``auth`` object in every body, in two
flavours: an integrator's *application* (applicationId + applicationPassword, acting on its own accounts by
naming ``accountId`` and ``userId``) or an *individual* login of one account (loginId + loginPassword). The
practice calls act on the certificate registry the receiver uses, with its rules and audit; ``MessageSend``
sends through :class:`~xdr_edge.sender.client.XdrClient` with the practice's own certificate.

Modules: :mod:`.app` (the WSGI application: routing, admission, errors, the log line), :mod:`.bodies` (reading
a body before its caller is known), :mod:`.calls` and
:mod:`.messaging` (what each call does), :mod:`.auth`, :mod:`.passwords`, :mod:`.throttle` (who is calling),
:mod:`.schema`, :mod:`.openapi` and :mod:`.validation` (the calls as a table, the OpenAPI document built from it,
which is also what requests are checked against),
:mod:`.credentials` (practices' sending credentials), :mod:`.forms` (streamed multipart uploads),
:mod:`.settings` (the TOML file, assembling the server). Storage: :mod:`xdr_edge.registry.accounts`.

May import: :mod:`xdr_edge.protocol`, the shared modules, :mod:`xdr_edge.sender`, :mod:`xdr_edge.registry`
and :mod:`xdr_edge.receiver` (for its cheroot server and settings readers); never devtools, conformance or cli.
"""

from __future__ import annotations
