"""``python -m graphql_api``: the same as the ``graphql-api`` command."""

import sys

from graphql_api.cli import main

sys.exit(main())
