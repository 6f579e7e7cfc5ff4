"""The sound event detection benchmark suite.

* :mod:`benchmarks.sed.soundscapes` builds the strongly labelled soundscapes from the shared
  recordings (``python -m benchmarks.sed.soundscapes``).
* :mod:`benchmarks.sed.run` scores them with every method, tunes on ``dev``, reports on
  ``test``, times each method, and writes ``benchmarks/results/sed.json`` and
  ``benchmarks/README.md`` (``python -m benchmarks.sed``).
"""
