"""Benchmarks of the sidecar against the Cerbos anchor, measured in the same run.

One command: ``python -m bench.run_all`` (see ``bench/run_all.py``). Modules:

* ``localhost``: free ports, HTTP calls to 127.0.0.1, stopping what we started, RSS.
* ``wrk``: one bounded, pinned wrk run -> a result dict (``post_json.lua`` prints it).
* ``rights``: the rights catalogue and role templates, embedded; effective rights.
* ``directory_gen``: a seeded directory (JSON Lines for ``sidecar import``) and check bodies.
* ``sidecar_server``: the sidecar under test as a context manager; token, import, RSS.
* ``sidecar_bench`` / ``cerbos``: the two engines' scenario runs.
* ``report``: medians, ratios and the markdown table.

Everything targets 127.0.0.1 only and every load loop is bounded (``wrk -d`` and ``timeout``).
"""
