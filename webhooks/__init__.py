"""The webhook front door: authenticate, store once, queue a job, answer 200."""
