"""The Python entry point the Engine API's ``POST /build`` uses: a tar stream in, an image id and
progress events out (run in a child interpreter, as the API server is its own process)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

from tests.conftest import REPO

SCRIPT = """
import json, sys
from pallet.kernel.build import BuildRequest, build
from pallet.kernel.config import Config
from pallet.kernel.engine import Engine

engine = Engine(Config.load(sys.argv[1], sys.argv[2]))
events = []
request = BuildRequest(context_stream=sys.stdin.buffer, dockerfile="docker/app.Dockerfile", tags=["api:built"],
                       build_args={"WHO": "api"}, labels={"via": "api"})
image_id = build(engine, request, progress=events.append)
print(json.dumps({"id": image_id, "events": events}))
"""


def test_build_from_a_tar_stream_with_progress_events(build):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("docker/app.Dockerfile", b"FROM busybox\nARG WHO\nRUN echo hello $WHO > /hi\n"
                                                     b"COPY f /f\n"), ("f", b"file")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pallet = build.pallet
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(pallet.root), str(pallet.run_root)], input=buffer.getvalue(),
                          capture_output=True, cwd=str(REPO), env=pallet.env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    kinds = [e["type"] for e in result["events"]]
    assert kinds.count("step") == 4 and kinds.count("done") == 4
    steps = [e["name"] for e in result["events"] if e["type"] == "step"]
    assert steps[2] == "[stage-0 3/4] RUN echo hello $WHO > /hi"
    assert build.config("api:built")["Id"] == result["id"]
    assert build.config("api:built")["Config"]["Labels"] == {"via": "api"}
    fs = build.filesystem("api:built")
    assert fs["hi"].data == b"hello api\n" and fs["f"].data == b"file"
