"""``python -m benchmarks.sed``: run the whole SED benchmark (see :mod:`benchmarks.sed.run`)."""

from benchmarks.sed.run import main

main()
