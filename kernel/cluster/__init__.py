"""Orchestration across hosts on etcd: nodes, services, tasks, one elected leader, per-node agents.

This package is a kernel service (like the embedded DNS and the etcd client), not a driver.
Everything shared lives in the cluster store under ``/pallet/swarm/``; records are JSON in the
shapes of Docker's swarm API objects, so the Engine API serves them as they are:

``nodes/<node-id>``
    a Docker ``Node``: ``ID``, ``Version.Index``, ``CreatedAt``/``UpdatedAt``, ``Spec`` (``Role``
    manager|worker, ``Availability`` active|pause|drain, ``Labels``), ``Description``
    (``Hostname``, ``Platform``, ``Resources.NanoCPUs``/``MemoryBytes``), ``Status`` (``State``,
    ``Addr``), ``ManagerStatus`` (``Leader``, ``Reachability``, ``Addr``) for managers.
``alive/<node-id>``
    the node's address, put under the node's lease; a node is ``ready`` while this key exists and
    ``down`` once its lease expired (``Status.State`` is derived from it when read).
``service-names/<name>``
    the service id, claimed with create-if-absent so two managers cannot create one name twice.
``services/<service-id>``
    a Docker ``Service``: ``ID``, ``Version.Index``, ``Spec`` (a ``ServiceSpec``: ``Name``,
    ``Labels``, ``TaskTemplate`` {``ContainerSpec``, ``Resources``, ``RestartPolicy``,
    ``Placement``, ``Networks``}, ``Mode`` {``Replicated.Replicas`` | ``Global``},
    ``UpdateConfig``, ``RollbackConfig``, ``EndpointSpec`` {``Mode`` vip|dnsrr, ``Ports``}),
    ``PreviousSpec``, ``Endpoint`` (``Spec``, ``Ports``, ``VirtualIPs`` [{``NetworkID``, ``Addr``
    "10.0.9.2/24"}]), ``UpdateStatus``.
``tasks/<task-id>``
    a Docker ``Task``: ``ID``, ``ServiceID``, ``Slot`` (replicated) , ``NodeID``, ``Spec`` (the
    service's ``TaskTemplate`` when the task was made), ``DesiredState`` running|shutdown,
    ``Status`` {``State`` new|pending|assigned|starting|running|complete|failed|shutdown|rejected,
    ``Timestamp``, ``Message``, ``Err``, ``ContainerStatus`` {``ContainerID``, ``PID``,
    ``ExitCode``}, ``Health`` (a pallet addition: ""|starting|healthy|unhealthy)},
    ``NetworksAttachments`` [{``Network`` {``ID``}, ``Addresses`` ["10.0.9.7/24"]}].
``leader``
    the election name (etcd's v3election API); the campaign value is the leader's node id.
``log-endpoints/<node-id>``
    ``http://ADDR:PORT`` of the node's log server (:mod:`.logs`), under the node's lease.
``/pallet/mesh-synced/<node-id>`` (outside the prefix, so its writes wake no watch)
    the store revision the node's mesh last applied, under its lease.
``secrets/<secret-id>``, ``secret-names/<name>``
    a Docker ``Secret`` (``ID``, ``Spec`` {``Name``, ``Labels``}) with ``Sealed`` (the value under
    AES-256-GCM with the secrets key, which never enters the store) and ``KeyID``; the name claimed
    as for services (:mod:`.secrets`).
``configs/<config-id>``, ``config-names/<name>``
    a Docker ``Config`` with its data (not secret) in ``Spec.Data`` (:mod:`.configs`).

Who writes what: the leader alone creates, assigns and retires tasks (``NodeID``,
``DesiredState``); the agent of the node a task is assigned to alone writes its ``Status`` and
``NetworksAttachments``, from the container it runs for it. Every write is a transaction that
compares the record's ``mod_revision``. A task's container is named
``<service>.<slot>.<task-id>`` (``<service>.<node-id>.<task-id>`` in global mode) and carries
the labels ``com.docker.swarm.service.id``, ``com.docker.swarm.service.name``,
``com.docker.swarm.task.id``, ``com.docker.swarm.node.id``.

Modules: ``mesh`` (virtual IPs, service DNS, load balancing and the routing mesh on this node),
``logs`` (each node serves its tasks' logs; ``service logs`` gathers them), ``secrets`` and
``configs`` (given to tasks on any node).
"""

PREFIX = "/pallet/swarm/"
