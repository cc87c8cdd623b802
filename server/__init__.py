"""affnet: an open-source affiliate network."""
