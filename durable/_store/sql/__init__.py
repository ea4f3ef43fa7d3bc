"""The static statements of the store, named, each with why it is written the way it is:
one module per part of the Store (only the commit builder and the batcher build SQL).

Two vocabularies are spelled out in the SQL: ``durable.calls.kind`` is 1 for a query and 2
for an update (runs.KIND_QUERY, runs.KIND_UPDATE), and a notification's payload begins with
the letter listener.NotificationKeys names (w, a, q, c, r).
"""
