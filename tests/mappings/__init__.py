"""mappings/*.yaml against a live in-process moto server, one file per service."""
