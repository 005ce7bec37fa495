"""Running a service: the consumer loop, per-partition workers, commits and dead letters."""
