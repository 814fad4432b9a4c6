"""The pure protocol core of ITI-41 over Direct XDR, shared by the sender, the receiver and the conformance suite.

Owns the typed submission (:mod:`.model`), the defaults a sender expects (:mod:`.compose`, :mod:`.cda`), the
formats and their readers and writers side by side (:mod:`.metadata`, :mod:`.soap`, :mod:`.mtom`,
:mod:`.response`, :mod:`.mediatype`), the profile rules (:mod:`.validate`), whole messages (:mod:`.wire`), the
meaning of an answer (:mod:`.classify`), the XDS error codes (:mod:`.codes`), stored messages and their inspection
(:mod:`.capture`, :mod:`.inspection`), and the error and finding types every part uses (:mod:`.errors`,
:mod:`.findings`). Bytes, streams and typed values in and out.

May import: only modules of this package (and the packaged WSDL, ``xdr_edge.wsdl``). No sockets, TLS, HTTP or
logging of content: ``tests/test_layout.py`` fails when a module here imports ``socket``, ``ssl``, ``requests``
or any other part of xdr_edge.
"""
