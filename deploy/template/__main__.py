"""`python -m deploy.template`: see `deploy.template.cli`."""

from __future__ import annotations

import sys

from deploy.template.cli import main

sys.exit(main())
