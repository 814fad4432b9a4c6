"""The sending side: :class:`~xdr_edge.sender.client.XdrClient` (pre-flight, retries, typed outcomes), the sender
configuration file (:mod:`.config`), one HTTPS session per practice and certificate (:mod:`.sessions`), and the
reading of HTTPS-stack failures in our terms (:mod:`.failures`). The folder-drop sender belongs here too.

May import: :mod:`xdr_edge.protocol` and the shared modules (:mod:`xdr_edge.certs`, :mod:`xdr_edge.tls`,
:mod:`xdr_edge.practice`, :mod:`xdr_edge.tomlconfig`); never the receiver, the registry or devtools.
"""
