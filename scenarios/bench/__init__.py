"""``fedspace bench``: fedspace measured side by side with established peers, in one run.

The entry point is ``scenarios.bench.cli.bench`` (the ``fedspace bench`` command). A
benchmark is a function registered with ``scenarios.bench.model.benchmark`` in one of the
modules named by ``scenarios.bench.model.MODULES``; it receives the run's ``Session``
(``harness``) and returns ``Result`` rows (``model``) that ``report`` prints and writes to
BENCHMARKS.md. Servers: ``instance`` (fedspace), ``peers`` (wsgidav, nginx); load:
``wrk`` and curl.
"""
