"""Ad slots: publishers place a snippet, affnet picks an ad, counts what is seen and clicked."""
