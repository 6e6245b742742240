"""The stacks of this repo, made from what src/ holds (see app.py).

The repo's own scripts are the one reader of its packages: `scripts/monorepo.py` (packages,
deploy kinds, AWS names) and `scripts/iam_policy.py` (an ECS job's task role) are imported from
there, never copied.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))
