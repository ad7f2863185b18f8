"""``python -m payments.sandbox``: serve every sandbox gateway on one port for the demo.

Reads DIANFEI_SANDBOX_URL (default http://127.0.0.1:5100) and DIANFEI_PUBLIC_URL (the portal,
default http://127.0.0.1:5000); keys live in instance/sandbox/ (``--init`` only makes them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from werkzeug.serving import run_simple

from payments.sandbox.compose import load_or_create_keys, make_app

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    keys = load_or_create_keys(ROOT / "instance" / "sandbox")
    if "--init" in argv:
        return 0
    sandbox_url = os.environ.get("DIANFEI_SANDBOX_URL", "http://127.0.0.1:5100")
    portal_url = os.environ.get("DIANFEI_PUBLIC_URL", "http://127.0.0.1:5000")
    parts = urlsplit(sandbox_url)
    print(f"Payment sandbox on {sandbox_url} (/wechat /alipay /stripe /wxa), "
          f"notifying {portal_url}", flush=True)
    run_simple(parts.hostname or "127.0.0.1", parts.port or 5100,
               make_app(keys, sandbox_url, portal_url), threaded=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
