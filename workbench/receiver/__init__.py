"""`workbench listen`: the durable webhook receiver.

Raw first: a request to `POST /hooks/{connection}` is checked (connection, size, signature),
stored by the group-commit writer (writer.py) and answered only after its transaction
committed, so 2xx means "on disk". Stored deliveries wait as `held`; the follower
(follower.py) applies them through the ingest pipeline within a second, off the request path,
once their connection is active. The directory (directory.py) follows connections and their
webhook secrets in the store, so changes other processes make show within two seconds.
"""
