"""matstore's tests.

``matstore`` is imported first, so that SQLAlchemy loads as it does in the product (without
its compiled result rows; see ``matstore/__init__.py``).
"""

import matstore  # noqa: F401
