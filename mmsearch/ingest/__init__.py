"""Getting media in: discovery, decoding, the parallel preprocessing pipeline."""
