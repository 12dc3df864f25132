"""LVIS evaluation at the size of the real val set.

- ``ground_truth``: the annotation file as compact arrays (sorted image / category ids, per-annotation columns,
  the per-image negative and not-exhaustive category sets as sorted codes).
- ``results_reader``: the results JSON read block by block (bounded memory), validated before anything is
  evaluated; mask RLEs spilled to a temporary file and read back per chunk.
- ``matching``: LVIS's greedy per (image, category) matching as a compiled kernel, for every IoU threshold and
  area range at once, keeping only two bit masks per detection (true / false positive).
- ``accumulate``: precision per (IoU, recall, category, area) and the summary, as the official API computes them.
- ``streaming``: the evaluator that ties them together, with chunks of images evaluated in worker processes.
- ``shards``: per-rank result shards written while inferring and merged by streaming into one results file.
"""
