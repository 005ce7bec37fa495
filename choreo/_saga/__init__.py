"""The saga tracker: watches a choreographed transaction and compensates it when it fails.

``definition`` (what a saga is), ``state`` (what is stored), ``engine`` (the pure state
machine), ``store`` (changelog + memory), ``topology`` (topics and co-partitioning),
``tracker`` (the transactional Kafka loop with its deadline timer), ``inspect`` (reading
states back for the CLI).
"""
