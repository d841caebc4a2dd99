"""Reading what a user hands the tool and writing what the tool makes, safely.

The lowest layer above `errors` and `progress`: every command opens its input files and
writes its output directories through these functions, so one set of rules holds everywhere:

- `files`: an input path is an existing regular file (not a directory, FIFO or device) of a
  bounded size; text is UTF-8; JSON is parsed with a clear error.
- `hdf5`: HDF5 files are opened only after every object in them has been checked: external
  links, external storage, virtual datasets and filters that would load a plugin are refused
  (they make libhdf5 open other files), and dataset sizes are bounded before anything is read.
- `npz`: .npz archives are checked member by member from their headers (no pickles, no object
  arrays, shapes within bounds) before any array is allocated.
- `output`: one rule for `--out` (new directories are staged and renamed; a non-empty one is
  refused without `--overwrite`; `--overwrite` removes only files the tool itself wrote).
- `limits`: the documented upper bounds on time steps, samples and sizes.
"""
