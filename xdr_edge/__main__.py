"""``python -m xdr_edge`` runs the ``xdr-edge`` command."""

from xdr_edge.cli import main

main()
