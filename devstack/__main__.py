"""`python -m devstack` is the `gangway` command."""

from devstack.cli import main

raise SystemExit(main())
