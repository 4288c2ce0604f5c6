"""`workbench listen`: the durable webhook receiver.

Raw first: a request to `POST /hooks/{connection}` is checked (connection, size, signature)
and handed to the group-commit writer (writer.py), which sends what is waiting to the store
process (store_process.py) as one batch, one transaction; the request is answered only after
its batch committed, so 2xx means "on disk". Stored deliveries wait as `held`; the store
process applies them through the ingest pipeline (follower.py) between batches, off the request
path, once their connection is active. The directory (directory.py) follows connections and
their webhook secrets in the store, so changes other processes make show within two seconds.
"""
