"""Tools for developers and demonstrations, never for production: the demo PKI (:mod:`.pki`), a whole edge on
loopback (:mod:`.lab`: PKI, registry, mutual-TLS receiver) and ``xdr-edge demo`` (:mod:`.demo`).

May import any part of xdr_edge except the CLI; no product part imports devtools (``tests/test_layout.py``).
"""
