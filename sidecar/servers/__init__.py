"""The HTTP servers ``sidecar serve`` can run the app under: granian (the default) and gunicorn.

``worker`` holds what both share (the app built inside each worker process, after the fork, and
stopped when the worker ends); ``granian_runner`` and ``gunicorn_runner`` adapt it to each
server. Entry-point layer: may import the app factory and everything below it.
"""
