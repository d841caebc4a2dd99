"""A seeded, bounded fuzz suite over every input kind neurodistill reads.

`cases.py` builds the base inputs and the mutated cases, `harness.py` runs each case (in a
persistent worker process through click's CliRunner, or as a real `neurodistill` subprocess
under strace) and classifies its outcome. `tests/test_fuzz_inputs.py` runs a short subset,
`scripts/fuzz.py` the whole set.
"""
