"""Dramatiq actors: thin jobs over billing services, on queues split by kind of work."""
