"""``python -m campaigns.sandbox --port 8099 --record PATH``: run the sandbox gateway."""

import sys

from campaigns.sandbox.server import main

if __name__ == "__main__":
    sys.exit(main())
