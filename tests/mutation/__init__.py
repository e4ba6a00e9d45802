"""Hand-made mutants of the billing rules, each of which some fast SQLite test must kill (`make mutants`)."""
