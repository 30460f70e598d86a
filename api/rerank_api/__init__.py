"""The HTTP facade: validates requests, enqueues RQ jobs, waits for results. Never imports torch.

``app`` builds the FastAPI app, ``routes`` the endpoints, ``schemas`` the wire types,
``errors`` the one error table, ``dispatch`` the enqueue-and-wait path (``atomic`` sends an enqueue's
commands as one script, ``results`` is the process's one result reader), ``monitor`` the background view
of Redis and the live workers.
"""
