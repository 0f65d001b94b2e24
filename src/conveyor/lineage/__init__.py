"""Lineage: the graph of datasets, runs and models; queries, and OpenLineage events."""
