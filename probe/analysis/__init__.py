"""Analyses over recordings: concepts, unit search, linear probes, saturation, embeddings, neuron cards."""
