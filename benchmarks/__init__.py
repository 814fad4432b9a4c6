"""Speed and memory measurements of xdr-edge, run on demand (never in the test suite): ``python -m benchmarks``.

Every case measures its baselines in the same run and reports ratios against them, so that figures from a
shared or different machine can be compared by ratio. See ``benchmarks/README.md``.
"""
