"""``python -m rerank_server`` is the ``rerank-server`` command."""

from rerank_server.cli import main

raise SystemExit(main())
