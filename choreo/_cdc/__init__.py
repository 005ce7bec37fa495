"""CDC through Debezium and the transactional outbox; public API in ``choreo.cdc``/``.outbox``.

One module per job: ``source`` declares connectors, ``relay`` shapes the
outbox connector, ``connect`` talks to Kafka Connect's REST API, ``change``
decodes change events, ``subscribe`` wires ``Service.on_change``,
``mapping`` turns changes into domain events, ``outbox_table`` and
``outbox`` define and write the outbox, ``slots`` cleans up after a deleted
connector.
"""
