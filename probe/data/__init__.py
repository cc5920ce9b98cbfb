"""Text in, ids out: vocabularies, bundled corpora and their splits, training batches."""
