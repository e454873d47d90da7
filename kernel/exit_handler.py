"""After a detached container exits: its monitor (a quick exit), the root's engine or its log pump
records the exit here.

Apart from :mod:`pallet.kernel.monitor` (which writes the parameters) and
:mod:`pallet.kernel.logpump` (which calls this), so that neither imports the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pallet.kernel import lifecycle
from pallet.kernel.config import Config
from pallet.kernel.containers import ContainerStore
from pallet.kernel.engine import Engine
from pallet.kernel.errors import PalletError


def after_exit(params_path: str, exit_code: int, unless_recorded: bool = False, engine: Engine | None = None) -> None:
    """Called by a detached container's log pump once it has exited: record it, clean up, honour --rm.

    ``params_path`` is the JSON file the monitor wrote (root, run root, config, storage driver, id).
    ``unless_recorded``: nothing to do unless the record still shows the container running under this
    process as its monitor (an engine's worker that the pump handed the exit to recorded it, then failed).
    ``engine``: the monitor's own, when the container exited before the monitor became the log pump.
    """
    params = json.loads(Path(params_path).read_text())
    if engine is None:
        config_path = params["config_path"] if Path(params["config_path"]).exists() else None
        engine = Engine(Config.load(params["root"], params["run_root"], config_path,
                                    params["storage_driver"], params["storage_opts"]))
    engine.plugins.engage("storage", "security", "runtime")
    try:
        record = ContainerStore(engine).load(params["id"])
    except PalletError:
        return  # removed meanwhile (rm -f already cleaned up)
    if unless_recorded and (not record.running or record.monitor_pid != os.getpid()):
        return   # recorded already (and perhaps restarted, under a new monitor)
    record = lifecycle.finish(engine, record, exit_code)
    from pallet.kernel import restart

    restart.after_exit(engine, record, exit_code)
