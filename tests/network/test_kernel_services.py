"""The network services are the kernel's: each loads alone, and none reaches back into the store or a plugin."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

SERVICES = ["dns", "etcd", "ports", "resolv", "records"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_neither_the_store_nor_a_plugin(service):
    code = (f"import sys, pallet.kernel.network.{service}; "
            "print(sorted(m for m in sys.modules if m.startswith(('pallet.plugins', 'pallet.kernel.network.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == repr([f"pallet.kernel.network.{service}"])
