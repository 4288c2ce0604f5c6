"""`workbench listen`: the durable webhook receiver.

Raw first: a request to `POST /hooks/{connection}` is checked (connection, size, signature)
and handed to the group-commit writer (writer.py), which sends what is waiting to the spool
writer (spool_writer.py) as one batch, one transaction in the receiver's own spool file
(spool.py); the request is answered only after its batch committed, so 2xx means "on disk".
The applier (applier.py) moves spooled deliveries into the store in large transactions and
applies them on the way (mover.py), off the request path and out of its way: the spool and the
store are separate files, so neither waits for the other's write lock. The directory
(directory.py) follows connections and their webhook secrets in the store, so changes other
processes make show within two seconds.
"""
