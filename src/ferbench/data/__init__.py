"""From a dataset's images to what training reads: ``prepare`` (faces, the cache), the protocol
and its folds (protocols), loading a fold and its batches (folds), augmentation, and the checks
and views of a prepared dataset (cache_content, split_check, inspection)."""
