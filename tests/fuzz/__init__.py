"""The fuzz harness: one target per reader of what peers and captures hand us, and the receiver's WSGI app
in-process (``targets.py``); what counts as a crash (``oracle.py``); a seed corpus made by our own code
(``corpus.py``); the edge in-process (``world.py``); inputs that once broke a reader (``regressions/``).

Run with ``python -m tests.fuzz`` (``__main__.py``); docs/fuzzing.md says how and what CI runs. Nothing here is
imported at package import time, so the fuzzer can instrument xdr_edge when it imports it.
"""
