"""The leader's reconcile loop: services' desired state -> tasks on nodes (orchestrator and scheduler).

One pass reads every record at one revision and makes the few writes that bring the tasks closer
to the services' specs, each a transaction on the record's ``mod_revision``; a write that loses a
race is simply redone by the next pass, so a pass may stop anywhere and a new leader resumes it.

- A *slot* is a replica number (replicated mode) or a node id (global mode). Each wanted slot
  gets one live task (``DesiredState`` running); slots beyond the wanted ones are retired.
- A live task is *dead* when its agent reported it ended, its node is Down (lease expired) or
  gone, or its node is drained: it is retired and its slot gets a new task, as the restart policy
  (``Condition``, ``Delay``, ``MaxAttempts``) allows. A slot whose retired task still runs on a
  Ready node waits until it stopped (stop-first).
- Placement of a new task: constraints, then resources, then spread (``placement.choose``).
- Rolling update: tasks whose ``Spec`` is not the service's ``TaskTemplate`` are replaced
  ``Parallelism`` at a time; the next batch starts when every new task is running, healthy and has
  been for ``Monitor``, plus ``Delay``. A new task that fails meanwhile triggers ``FailureAction``.
"""

from __future__ import annotations

import time

from pallet.kernel.cluster import placement, store

ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned")
SELF_ENDED = ("complete", "failed", "rejected")
HISTORY = 5  # retired tasks kept per slot (Docker's TaskHistoryRetentionLimit)
SECOND = 10**9


def live(task: dict) -> bool:
    return task.get("DesiredState") == "running"


class Scheduler:
    def __init__(self, etcd):
        self.etcd = etcd
        self.quiet_since: dict[str, float] = {}  # service id -> when its last update batch settled

    # --- writes ---------------------------------------------------------------------------
    def _put(self, snap: store.Snapshot, task: dict) -> bool:
        record = {k: v for k, v in task.items() if k != "Version"}
        record["UpdatedAt"] = store.now()
        key = f"{store.TASKS}{task['ID']}"
        revision = self.etcd.txn({key: snap.rev("tasks", task["ID"])}, puts={key: record})
        if revision:
            snap.revisions[key] = revision
        return bool(revision)

    def retire(self, snap: store.Snapshot, task: dict) -> None:
        if live(task):
            self._put(snap, dict(task, DesiredState="shutdown"))
            task["DesiredState"] = "shutdown"

    def _new_task(self, service: dict, slot, node_id: str | None, reason: str = "") -> dict:
        stamp = store.now()
        task = {"ID": store.new_id(), "CreatedAt": stamp, "UpdatedAt": stamp, "ServiceID": service["ID"],
                "ServiceAnnotations": {"Name": service["Spec"]["Name"]}, "NodeID": node_id or "",
                "Spec": service["Spec"]["TaskTemplate"], "DesiredState": "running",
                "Status": {"State": "assigned" if node_id else "pending", "Timestamp": stamp,
                           "Message": "scheduled" if node_id else "pending task scheduling", "Err": reason},
                "NetworksAttachments": []}
        if "Replicated" in service["Spec"]["Mode"]:
            task["Slot"] = slot
        return task

    def _create(self, task: dict) -> bool:
        return self.etcd.create(f"{store.TASKS}{task['ID']}", {k: v for k, v in task.items() if k != "Version"})

    # --- one pass -------------------------------------------------------------------------
    def reconcile(self, snap: store.Snapshot) -> None:
        usable = [n for i, n in sorted(snap.nodes.items())
                  if isinstance(n, dict) and snap.ready(i) and n["Spec"].get("Availability") == "active"]
        load: dict[str, list[dict]] = {}
        for task in snap.tasks.values():
            if isinstance(task, dict) and live(task) and task.get("NodeID"):
                load.setdefault(task["NodeID"], []).append(task)
        for service in sorted((s for s in snap.services.values() if isinstance(s, dict)), key=lambda s: s["ID"]):
            self.reconcile_service(snap, service, usable, load)
        self.collect(snap)

    def dead(self, snap: store.Snapshot, task: dict) -> str:
        """Why a live task can no longer count as running ("" when it still can)."""
        if task["Status"]["State"] in ENDED:
            return task["Status"]["State"]
        node_id = task.get("NodeID")
        if not node_id:
            return ""
        node = snap.nodes.get(node_id)
        if not isinstance(node, dict):
            return "node removed"
        if node_id not in snap.alive:
            return "node down"
        if node["Spec"].get("Availability") == "drain":
            return "node drained"
        return ""

    def settled(self, task: dict, monitor_ns: int) -> bool:
        status = task["Status"]
        if status["State"] != "running" or status.get("Health") not in (None, "", "healthy"):
            return False
        return time.time() - store.parse_time(status.get("Timestamp", "")) >= monitor_ns / SECOND

    def wanted_slots(self, snap: store.Snapshot, service: dict) -> list:
        mode = service["Spec"]["Mode"]
        if "Replicated" in mode:
            return list(range(1, mode["Replicated"]["Replicas"] + 1))
        constraints = (service["Spec"]["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
        return [i for i, n in sorted(snap.nodes.items()) if isinstance(n, dict) and snap.ready(i)
                and n["Spec"].get("Availability") != "drain" and placement.satisfies(n, constraints)]

    def reconcile_service(self, snap, service: dict, usable: list[dict], load: dict) -> None:
        spec = service["Spec"]
        template = spec["TaskTemplate"]
        replicated = "Replicated" in spec["Mode"]
        slot_of = (lambda t: t.get("Slot")) if replicated else (lambda t: t.get("NodeID"))
        tasks = sorted((t for t in snap.tasks.values() if isinstance(t, dict) and t.get("ServiceID") == service["ID"]),
                       key=lambda t: t.get("CreatedAt", ""))
        wanted = self.wanted_slots(snap, service)
        by_slot: dict = {}
        for task in tasks:
            by_slot.setdefault(slot_of(task), []).append(task)
        for slot, slot_tasks in by_slot.items():
            if slot not in wanted:
                for task in slot_tasks:
                    self.retire(snap, task)
        for slot in wanted:
            for task in by_slot.get(slot, []):
                if live(task) and self.dead(snap, task):
                    self.retire(snap, task)
        if self.update_step(snap, service, tasks, by_slot, wanted, usable, load):
            return
        monitor = spec["UpdateConfig"].get("Monitor", 0)
        for slot in wanted:
            slot_tasks = by_slot.get(slot, [])
            running = [t for t in slot_tasks if live(t)]
            if not running:
                if self.may_start(snap, service, slot_tasks):
                    self.place(snap, service, slot, usable, load)
                continue
            newest = running[-1]
            if not newest.get("NodeID"):
                self.assign(snap, service, newest, usable, load)
            elif len(running) > 1 and newest["Spec"] == template and self.settled(newest, monitor):
                for older in running[:-1]:
                    self.retire(snap, older)

    def may_start(self, snap, service: dict, slot_tasks: list[dict]) -> bool:
        """Whether the restart policy lets an empty slot have a new task now."""
        for task in slot_tasks:  # stop-first: the retired task stops before its successor starts
            if task["Status"]["State"] in ("running", "starting", "assigned", "preparing") \
                    and snap.ready(task.get("NodeID", "")) and task.get("NodeID") in snap.nodes:
                return False
        if not slot_tasks:
            return True
        last = slot_tasks[-1]
        ended = last["Status"]["State"]
        if ended not in SELF_ENDED:
            return True  # retired by the scheduler (node down, drain, update, scale): always replaced
        policy = service["Spec"]["TaskTemplate"]["RestartPolicy"]
        condition = policy.get("Condition", "any")
        if condition == "none" or (condition == "on-failure" and ended == "complete"):
            return False
        attempts = policy.get("MaxAttempts") or 0
        if attempts and sum(t["Status"]["State"] in SELF_ENDED for t in slot_tasks) > attempts:
            return False
        delay = (policy.get("Delay") or 0) / SECOND
        return time.time() - store.parse_time(last["Status"].get("Timestamp", "")) >= delay

    def place(self, snap, service: dict, slot, usable: list[dict], load: dict) -> dict | None:
        template = service["Spec"]["TaskTemplate"]
        if "Replicated" in service["Spec"]["Mode"]:
            node_id, reason = placement.choose(usable, template, service["ID"], load)
        else:
            node_id, reason = (slot, "") if any(n["ID"] == slot for n in usable) else (None, "")
            if node_id is None:
                return None  # a paused node keeps its global task but gets no new one
        task = self._new_task(service, slot, node_id, reason)
        if self._create(task) and node_id:
            load.setdefault(node_id, []).append(task)
        return task

    def assign(self, snap, service: dict, task: dict, usable: list[dict], load: dict) -> None:
        node_id, reason = placement.choose(usable, service["Spec"]["TaskTemplate"], service["ID"], load)
        if node_id is None:
            if task["Status"].get("Err") != reason:
                self._put(snap, dict(task, Status=dict(task["Status"], Err=reason)))
            return
        stamp = store.now()
        if self._put(snap, dict(task, NodeID=node_id, Status={"State": "assigned", "Timestamp": stamp,
                                                              "Message": "scheduled", "Err": ""})):
            load.setdefault(node_id, []).append(task)

    # --- rolling updates -------------------------------------------------------------------
    def _set_update_status(self, snap, service: dict, status: dict, spec_swap: bool = False) -> None:
        key = f"{store.SERVICES}{service['ID']}"
        record = {k: v for k, v in service.items() if k not in ("Version", "ServiceStatus")}
        if spec_swap:
            record["Spec"], record["PreviousSpec"] = record["PreviousSpec"], record["Spec"]
        record["UpdateStatus"] = status
        record["UpdatedAt"] = store.now()
        self.etcd.txn({key: snap.rev("services", service["ID"])}, puts={key: record})

    def update_step(self, snap, service: dict, tasks: list[dict], by_slot: dict, wanted: list, usable, load) -> bool:
        """Advance a rolling update by one batch if it may; True when the pass must stop here."""
        status = service.get("UpdateStatus") or {}
        state = status.get("State")
        if state not in ("updating", "rollback_started"):
            return False
        rolling_back = state == "rollback_started"
        spec = service["Spec"]
        config = spec["RollbackConfig" if rolling_back else "UpdateConfig"]
        template = spec["TaskTemplate"]
        started = store.parse_time(status.get("StartedAt", ""))
        failed = [t for t in tasks if t["Spec"] == template and store.parse_time(t.get("CreatedAt", "")) >= started
                  and t["Status"]["State"] in ("failed", "rejected")]
        fresh = [t for t in tasks if t["Spec"] == template and store.parse_time(t.get("CreatedAt", "")) >= started]
        action = config.get("FailureAction", "pause")
        ratio = float(config.get("MaxFailureRatio") or 0)
        if failed and action != "continue" and len(failed) > ratio * max(len(fresh), 1):
            message = f"update paused due to failure or early termination of task {failed[0]['ID']}"
            if action == "rollback" and not rolling_back and service.get("PreviousSpec"):
                self._set_update_status(snap, service, {
                    "State": "rollback_started", "StartedAt": store.now(),
                    "Message": f"update rolled back due to failure or early termination of task {failed[0]['ID']}"},
                    spec_swap=True)
            else:
                self._set_update_status(snap, service, {"State": "rollback_paused" if rolling_back else "paused",
                                                        "StartedAt": status.get("StartedAt"), "Message": message})
            self.quiet_since.pop(service["ID"], None)
            return True
        monitor = config.get("Monitor", 0)
        outdated, in_flight = [], 0
        for slot in wanted:
            running = [t for t in by_slot.get(slot, []) if live(t)]
            if not running:
                in_flight += 1
                continue
            if any(t["Spec"] == template and not self.settled(t, monitor) for t in running) or len(running) > 1:
                in_flight += 1
            elif running[-1]["Spec"] != template:
                outdated.append(running[-1])
        if not outdated and not in_flight:
            done = "rollback_completed" if rolling_back else "completed"
            self._set_update_status(snap, service, {"State": done, "StartedAt": status.get("StartedAt"),
                                                    "CompletedAt": store.now(),
                                                    "Message": "rollback completed" if rolling_back else "update completed"})
            self.quiet_since.pop(service["ID"], None)
            return False
        if in_flight:
            self.quiet_since.pop(service["ID"], None)
            return False
        quiet = self.quiet_since.setdefault(service["ID"], time.time() if fresh else 0.0)
        if time.time() - quiet < (config.get("Delay") or 0) / SECOND:
            return False
        self.quiet_since.pop(service["ID"], None)
        parallelism = config.get("Parallelism") or len(outdated)
        for task in outdated[:parallelism]:
            if config.get("Order") == "start-first":
                self.place(snap, service, task.get("Slot") if "Replicated" in spec["Mode"] else task["NodeID"],
                           usable, load)
            else:
                self.retire(snap, task)
        return False

    # --- garbage ---------------------------------------------------------------------------
    def collect(self, snap: store.Snapshot) -> None:
        """Retire the tasks of removed services; delete retired tasks that ended, beyond the history kept."""
        groups: dict = {}
        for task in snap.tasks.values():
            if not isinstance(task, dict):
                continue
            if task.get("ServiceID") not in snap.services:
                self.retire(snap, task)
            groups.setdefault((task.get("ServiceID"), task.get("Slot") or task.get("NodeID")), []).append(task)
        for (service_id, _slot), tasks in groups.items():
            ended = [t for t in sorted(tasks, key=lambda t: t.get("CreatedAt", ""))
                     if not live(t) and (t["Status"]["State"] in ENDED or t["Status"]["State"] in ("pending", "new")
                                         or not snap.ready(t.get("NodeID", "")))]
            keep = 0 if service_id not in snap.services else HISTORY
            for task in ended[:max(0, len(ended) - keep)]:
                key = f"{store.TASKS}{task['ID']}"
                self.etcd.txn({key: snap.rev("tasks", task["ID"])}, deletes=[key])
