"""Display of results: text tables, HTML, plots."""
