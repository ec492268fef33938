"""Demo estate for aws-topology: an in-process moto server plus deterministic seeding."""
