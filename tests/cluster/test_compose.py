"""Compose v3 -> ServiceSpec translation and schema validation for ``stack deploy`` (pure: no engine, no etcd)."""

from __future__ import annotations

import textwrap

import pytest

from pallet.kernel.cluster.compose import ComposeError, convert, interpolate, load, parse_short_port, validate


def plan_of(tmp_path, text: str, environ=None, name: str = "demo"):
    path = tmp_path / "compose.yml"
    path.write_text(textwrap.dedent(text))
    return load(path, name, environ or {})


def service_of(tmp_path, body: str, extra: str = "", environ=None):
    text = "services:\n  web:\n" + textwrap.indent(textwrap.dedent(body), "    ") + textwrap.dedent(extra)
    return plan_of(tmp_path, text, environ).services["demo_web"]


def error_of(tmp_path, text: str, environ=None) -> str:
    with pytest.raises(ComposeError) as caught:
        plan_of(tmp_path, text, environ)
    return str(caught.value)


# --- names, labels, container spec ---------------------------------------------------------
def test_service_names_and_labels_carry_the_stack_namespace(tmp_path):
    plan = plan_of(tmp_path, """
        version: "3.8"
        services:
          web:
            image: busybox:1.36
            labels: {tier: front}
            deploy:
              labels: [owner=ops]
    """)
    spec = plan.services["demo_web"]
    assert spec["Name"] == "demo_web"
    assert spec["Labels"] == {"owner": "ops", "com.docker.stack.image": "busybox:1.36",
                              "com.docker.stack.namespace": "demo"}
    assert spec["TaskTemplate"]["ContainerSpec"]["Labels"] == {"tier": "front", "com.docker.stack.namespace": "demo"}
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:1.36"


def test_entrypoint_is_command_and_command_is_args_split_as_a_shell_would(tmp_path):
    container = service_of(tmp_path, """
        image: busybox
        entrypoint: /bin/sh -c
        command: 'echo "hello world"; sleep 1'
    """)["TaskTemplate"]["ContainerSpec"]
    assert container["Command"] == ["/bin/sh", "-c"]
    assert container["Args"] == ["echo", "hello world;", "sleep", "1"]
    listed = service_of(tmp_path, """
        image: busybox
        command: ["sh", "-c", "echo a b"]
    """)["TaskTemplate"]["ContainerSpec"]
    assert listed["Args"] == ["sh", "-c", "echo a b"] and "Command" not in listed


def test_environment_merges_env_file_then_environment_sorted(tmp_path):
    (tmp_path / "web.env").write_text("# comment\nA=from-file\nB=file\n\nFROM_SHELL\n")
    container = service_of(tmp_path, """
        image: busybox
        env_file: web.env
        environment:
          A: override
          NUM: 3
          FLAG: true
          EMPTY: ""
          UNSET_IN_SHELL:
          IN_SHELL:
    """, environ={"IN_SHELL": "yes", "FROM_SHELL": "s"})["TaskTemplate"]["ContainerSpec"]
    assert container["Env"] == ["A=override", "B=file", "EMPTY=", "FLAG=true", "FROM_SHELL=s", "IN_SHELL=yes",
                                "NUM=3"]
    listed = service_of(tmp_path, """
        image: busybox
        environment: [X=1, "Y=a=b", IN_SHELL, GONE]
    """, environ={"IN_SHELL": "v"})["TaskTemplate"]["ContainerSpec"]
    assert listed["Env"] == ["IN_SHELL=v", "X=1", "Y=a=b"]


def test_a_missing_env_file_names_the_service(tmp_path):
    message = error_of(tmp_path, """
        services:
          web: {image: busybox, env_file: [nope.env]}
    """)
    assert message.startswith("services.web.env_file: open ") and "no such file or directory" in message


def test_container_fields(tmp_path):
    container = service_of(tmp_path, """
        image: busybox
        hostname: h1
        working_dir: /srv
        user: "1000:1000"
        stop_grace_period: 1m30s
        stop_signal: SIGINT
        tty: true
        stdin_open: true
        read_only: true
        init: true
        extra_hosts: ["db:10.0.0.5", "cache=10.0.0.6"]
        dns: 10.0.0.53
        dns_search: [example.org]
        cap_add: [NET_ADMIN]
        cap_drop: [MKNOD]
        sysctls: {net.core.somaxconn: 1024}
        ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    """)["TaskTemplate"]["ContainerSpec"]
    assert container["Hostname"] == "h1" and container["Dir"] == "/srv" and container["User"] == "1000:1000"
    assert container["StopGracePeriod"] == 90_000_000_000 and container["StopSignal"] == "SIGINT"
    assert container["TTY"] is container["OpenStdin"] is container["ReadOnly"] is container["Init"] is True
    assert container["Hosts"] == ["10.0.0.5 db", "10.0.0.6 cache"]
    assert container["DNSConfig"] == {"Nameservers": ["10.0.0.53"], "Search": ["example.org"]}
    assert container["CapabilityAdd"] == ["NET_ADMIN"] and container["CapabilityDrop"] == ["MKNOD"]
    assert container["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert container["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                                    {"Name": "nproc", "Soft": 512, "Hard": 512}]


def test_logging_becomes_the_task_log_driver(tmp_path):
    template = service_of(tmp_path, """
        image: busybox
        logging: {driver: syslog, options: {tag: web, max-size: 10}}
    """)["TaskTemplate"]
    assert template["LogDriver"] == {"Name": "syslog", "Options": {"tag": "web", "max-size": "10"}}


def test_healthcheck_forms(tmp_path):
    def check(body):
        return service_of(tmp_path, "image: busybox\nhealthcheck:\n" + textwrap.indent(textwrap.dedent(body), "  "))[
            "TaskTemplate"]["ContainerSpec"]["Healthcheck"]

    assert check("""
        test: wget -q -O- localhost
        interval: 5s
        timeout: 500ms
        start_period: 1m
        start_interval: 2s
        retries: 4
    """) == {"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 5_000_000_000, "Timeout": 500_000_000,
             "StartPeriod": 60_000_000_000, "StartInterval": 2_000_000_000, "Retries": 4}
    assert check("test: [CMD, /bin/true]") == {"Test": ["CMD", "/bin/true"]}
    assert check("disable: true") == {"Test": ["NONE"]}


# --- deploy ------------------------------------------------------------------------------------
def test_replicas_default_to_one_and_global_mode_has_none(tmp_path):
    assert service_of(tmp_path, "image: busybox\n")["Mode"] == {"Replicated": {"Replicas": 1}}
    assert service_of(tmp_path, "image: busybox\ndeploy: {replicas: 0}\n")["Mode"] == {"Replicated": {"Replicas": 0}}
    assert service_of(tmp_path, "image: busybox\ndeploy: {mode: global}\n")["Mode"] == {"Global": {}}
    message = error_of(tmp_path, """
        services:
          web: {image: busybox, deploy: {mode: global, replicas: 2}}
    """)
    assert message == "services.web.deploy.replicas: replicas can only be used with replicated mode"


def test_placement_resources_and_restart_policy(tmp_path):
    spec = service_of(tmp_path, """
        image: busybox
        deploy:
          placement:
            constraints: [node.labels.zone==a, node.role!=manager]
            preferences: [{spread: node.labels.rack}]
            max_replicas_per_node: 2
          resources:
            limits: {cpus: "1.5", memory: 512M, pids: 100}
            reservations: {cpus: 0.25, memory: 64m}
          restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
    """)
    template = spec["TaskTemplate"]
    assert template["Placement"] == {"Constraints": ["node.labels.zone==a", "node.role!=manager"],
                                     "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.rack"}}],
                                     "MaxReplicas": 2}
    assert template["Resources"] == {"Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 << 20, "Pids": 100},
                                     "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 64 << 20}}
    assert template["RestartPolicy"] == {"Condition": "on-failure", "Delay": 5_000_000_000, "MaxAttempts": 3,
                                         "Window": 120_000_000_000}


@pytest.mark.parametrize("restart, policy", [
    ("no", {"Condition": "none"}), ("always", {"Condition": "any"}), ("unless-stopped", {"Condition": "any"}),
    ("on-failure", {"Condition": "on-failure"}), ("on-failure:4", {"Condition": "on-failure", "MaxAttempts": 4}),
])
def test_the_restart_key_is_read_when_there_is_no_restart_policy(tmp_path, restart, policy):
    plan = plan_of(tmp_path, f"services:\n  web: {{image: busybox, restart: '{restart}'}}\n")
    assert plan.services["demo_web"]["TaskTemplate"]["RestartPolicy"] == policy
    assert plan.warnings == ["Ignoring unsupported options: restart"]


def test_no_restart_policy_leaves_the_default_to_the_orchestrator(tmp_path):
    assert "RestartPolicy" not in service_of(tmp_path, "image: busybox\n")["TaskTemplate"]


def test_update_and_rollback_config(tmp_path):
    spec = service_of(tmp_path, """
        image: busybox
        deploy:
          update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s,
                          max_failure_ratio: 0.3, order: start-first}
          rollback_config: {delay: 1s, failure_action: pause}
    """)
    assert spec["UpdateConfig"] == {"Parallelism": 2, "Delay": 10_000_000_000, "FailureAction": "rollback",
                                    "Monitor": 30_000_000_000, "MaxFailureRatio": 0.3, "Order": "start-first"}
    assert spec["RollbackConfig"] == {"Parallelism": 1, "Delay": 1_000_000_000, "FailureAction": "pause"}
    assert "UpdateConfig" not in service_of(tmp_path, "image: busybox\n")


# --- ports -------------------------------------------------------------------------------------
def test_short_port_syntax():
    assert parse_short_port("80") == [{"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"}]
    assert parse_short_port("8080:80/udp") == [{"Protocol": "udp", "TargetPort": 80, "PublishMode": "ingress",
                                                "PublishedPort": 8080}]
    assert parse_short_port("127.0.0.1:8080:80")[0]["PublishedPort"] == 8080
    assert parse_short_port("[::1]:8080:80")[0]["TargetPort"] == 80
    assert [(p["PublishedPort"], p["TargetPort"]) for p in parse_short_port("9000-9001:80-81")] == [(9000, 80),
                                                                                                   (9001, 81)]
    assert [p["TargetPort"] for p in parse_short_port("7000-7002")] == [7000, 7001, 7002]
    for bad in ("http", "80/icmp", "0", "70000", "9000-9002:80-81", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_short_port(bad)


def test_ports_short_and_long_syntax_and_endpoint_mode(tmp_path):
    spec = service_of(tmp_path, """
        image: busybox
        ports:
          - 80
          - "8443:443"
          - {target: 53, published: "5353", protocol: udp}
          - {target: 9100, published: 9100, mode: host}
    """)
    assert spec["EndpointSpec"] == {"Mode": "vip", "Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 443, "PublishMode": "ingress", "PublishedPort": 8443},
        {"Protocol": "udp", "TargetPort": 53, "PublishMode": "ingress", "PublishedPort": 5353},
        {"Protocol": "tcp", "TargetPort": 9100, "PublishMode": "host", "PublishedPort": 9100}]}
    dnsrr = service_of(tmp_path, """
        image: busybox
        ports: [{target: 80, published: 8080, mode: host}]
        deploy: {endpoint_mode: dnsrr}
    """)
    assert dnsrr["EndpointSpec"]["Mode"] == "dnsrr"
    message = error_of(tmp_path, """
        services:
          web: {image: busybox, ports: ["8080:80"], deploy: {endpoint_mode: dnsrr}}
    """)
    assert message.startswith("services.web.ports: a port published with ingress mode can't be used with")


# --- networks ----------------------------------------------------------------------------------
def test_a_service_without_networks_joins_the_stacks_default_overlay(tmp_path):
    plan = plan_of(tmp_path, "services:\n  web: {image: busybox}\n  db: {image: busybox}\n")
    assert plan.services["demo_web"]["TaskTemplate"]["Networks"] == [{"Target": "demo_default", "Aliases": ["web"]}]
    assert list(plan.networks) == ["demo_default"]
    assert plan.networks["demo_default"]["Driver"] == "overlay"
    assert plan.networks["demo_default"]["Labels"] == {"com.docker.stack.namespace": "demo"}


def test_declared_networks_aliases_external_and_explicit_names(tmp_path):
    plan = plan_of(tmp_path, """
        services:
          web:
            image: busybox
            networks:
              front: {aliases: [www]}
              shared:
              fixed:
          lone: {image: busybox, networks: [front]}
        networks:
          front:
            driver_opts: {encrypted: ""}
            attachable: true
            labels: {team: web}
            ipam: {config: [{subnet: 10.9.0.0/24}]}
          shared: {external: true}
          fixed: {name: global-fixed, internal: true}
          unused: {}
    """)
    assert plan.services["demo_web"]["TaskTemplate"]["Networks"] == [
        {"Target": "demo_front", "Aliases": ["web", "www"]},
        {"Target": "global-fixed", "Aliases": ["web"]},
        {"Target": "shared", "Aliases": ["web"]}]
    assert sorted(plan.networks) == ["demo_front", "global-fixed", "shared"]   # unused networks are not made
    front = plan.networks["demo_front"]
    assert front == {"Driver": "overlay", "Options": {"encrypted": ""}, "Labels": {"team": "web",
                     "com.docker.stack.namespace": "demo"}, "Internal": False, "Attachable": True,
                     "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "", "IPRange": ""}]}}
    assert plan.networks["shared"] == {"External": True} and plan.networks["global-fixed"]["Internal"] is True


def test_an_undefined_network_is_an_error_naming_it(tmp_path):
    assert error_of(tmp_path, "services:\n  web: {image: busybox, networks: [back]}\n") == \
        "services.web.networks: undefined network 'back'"


# --- volumes -----------------------------------------------------------------------------------
def test_volumes_named_bind_anonymous_and_tmpfs(tmp_path):
    spec = service_of(tmp_path, """
        image: busybox
        volumes:
          - data:/data
          - cache:/cache:ro,nocopy
          - ./conf:/etc/app:ro
          - /scratch
          - {type: tmpfs, target: /tmp, tmpfs: {size: 16m}}
          - {type: bind, source: /srv, target: /srv, bind: {propagation: rslave}}
          - {type: volume, source: data, target: /more, volume: {nocopy: true}}
    """, extra="""
        volumes:
          data:
          cache: {driver: local, driver_opts: {type: tmpfs, device: tmpfs}, labels: [kind=cache]}
    """)
    mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
    namespace = {"com.docker.stack.namespace": "demo"}
    assert mounts[0] == {"Type": "volume", "Source": "demo_data", "Target": "/data",
                         "VolumeOptions": {"Labels": namespace}}
    assert mounts[1] == {"Type": "volume", "Source": "demo_cache", "Target": "/cache", "ReadOnly": True,
                         "VolumeOptions": {"Labels": {"kind": "cache", **namespace}, "NoCopy": True,
                                           "DriverConfig": {"Name": "local",
                                                            "Options": {"type": "tmpfs", "device": "tmpfs"}}}}
    assert mounts[2] == {"Type": "bind", "Source": str(tmp_path / "conf"), "Target": "/etc/app", "ReadOnly": True}
    assert mounts[3] == {"Type": "volume", "Source": "", "Target": "/scratch", "VolumeOptions": {"Labels": namespace}}
    assert mounts[4] == {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 16 << 20}}
    assert mounts[5]["BindOptions"] == {"Propagation": "rslave"}
    assert mounts[6]["VolumeOptions"]["NoCopy"] is True


def test_external_and_named_volumes_keep_their_names(tmp_path):
    plan = plan_of(tmp_path, """
        services:
          web: {image: busybox, volumes: ["old:/old", "kept:/kept"]}
        volumes:
          old: {external: true}
          kept: {name: kept-everywhere}
    """)
    assert [m["Source"] for m in plan.services["demo_web"]["TaskTemplate"]["ContainerSpec"]["Mounts"]] == \
        ["old", "kept-everywhere"]
    assert plan.volumes["old"] == {"External": True}
    assert plan.volumes["kept-everywhere"]["Driver"] == "local"


def test_volume_errors(tmp_path):
    assert error_of(tmp_path, "services:\n  web: {image: busybox, volumes: ['data:/data']}\n") == \
        "services.web.volumes.0: undefined volume 'data'"
    assert error_of(tmp_path, "services:\n  web: {image: busybox, volumes: ['./a:/a:bogus']}\n") == \
        "services.web.volumes.0: invalid mode 'bogus' in './a:/a:bogus'"
    assert error_of(tmp_path, "services:\n  web: {image: busybox, volumes: [{type: tmpfs, source: x, target: /t}]}\n") \
        == "services.web.volumes.0: a tmpfs mount takes no source"


# --- secrets and configs -----------------------------------------------------------------------
def test_secrets_and_configs_references(tmp_path):
    plan = plan_of(tmp_path, """
        services:
          web:
            image: busybox
            secrets:
              - db_password
              - {source: api_key, target: key.txt, uid: "100", gid: "101", mode: 0400}
            configs:
              - {source: site, target: /etc/site.conf}
              - shared_conf
        secrets:
          db_password: {file: ./secrets/db.txt, labels: {rotate: monthly}}
          api_key: {external: true}
        configs:
          site: {file: site.conf}
          shared_conf: {external: {name: org-conf}}
          unused: {file: unused.conf}
    """)
    container = plan.services["demo_web"]["TaskTemplate"]["ContainerSpec"]
    assert container["Secrets"] == [
        {"File": {"Name": "db_password", "UID": "0", "GID": "0", "Mode": 0o444}, "SecretID": "",
         "SecretName": "demo_db_password"},
        {"File": {"Name": "key.txt", "UID": "100", "GID": "101", "Mode": 0o400}, "SecretID": "",
         "SecretName": "api_key"}]
    assert container["Configs"] == [
        {"File": {"Name": "/etc/site.conf", "UID": "0", "GID": "0", "Mode": 0o444}, "ConfigID": "",
         "ConfigName": "demo_site"},
        {"File": {"Name": "shared_conf", "UID": "0", "GID": "0", "Mode": 0o444}, "ConfigID": "",
         "ConfigName": "org-conf"}]
    assert plan.secrets == {"demo_db_password": {"Labels": {"rotate": "monthly", "com.docker.stack.namespace": "demo"},
                                                 "File": str(tmp_path / "secrets" / "db.txt")},
                            "api_key": {"External": True}}
    assert sorted(plan.configs) == ["demo_site", "demo_unused", "org-conf"]   # declared ones are all made


def test_secret_errors(tmp_path):
    assert error_of(tmp_path, "services:\n  web: {image: busybox, secrets: [pw]}\n") == \
        "services.web.secrets.0: undefined secret 'pw'"
    assert error_of(tmp_path, "services:\n  web: {image: busybox}\nsecrets:\n  pw: {labels: {a: b}}\n") == \
        "secrets.pw: needs 'file' (a path) or 'external: true'"


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("services:\n  web: {image: busybox, deploy: {replicas: x}}\n",
     "services.web.deploy.replicas: 'x' is not of type 'integer'"),
    ("services:\n  web: {image: busybox}\nservice_typo: {}\n", "top level: unknown key 'service_typo'"),
    ("services:\n  web: {image: busybox, imagee: busybox}\n", "services.web: unknown key 'imagee'"),
    ("services:\n  web: {image: busybox, deploy: {replica: 2}}\n", "services.web.deploy: unknown key 'replica'"),
    ("services:\n  web: {image: busybox, deploy: {mode: daemon}}\n",
     "services.web.deploy.mode: 'daemon' is not one of ['replicated', 'global']"),
    ("services:\n  web: {image: busybox, healthcheck: {interval: 5 seconds}}\n",
     "services.web.healthcheck.interval: '5 seconds' is not a 'duration'"),
    ("services:\n  web: {image: busybox, ports: ['80:http']}\n", "services.web.ports.0: '80:http' is not a 'port'"),
    ("services:\n  web: {image: busybox, ports: [[80]]}\n",
     "services.web.ports.0: [80] is not of type 'integer', 'string' or 'mapping'"),
    ("services:\n  web: {image: busybox, ports: [{published: 80}]}\n",
     "services.web.ports.0: 'target' is a required property"),
    ("services:\n  web: {image: busybox, deploy: {resources: {limits: {memory: lots}}}}\n",
     "services.web.deploy.resources.limits.memory: 'lots' is not a 'bytes'"),
    ("services:\n  web: {image: busybox, deploy: {resources: {limits: {cpus: many}}}}\n",
     "services.web.deploy.resources.limits.cpus: 'many' is not a 'cpus'"),
    ("services:\n  web: {command: ls}\n", "services.web: 'image' is a required property"),
    ("services:\n  'we b': {image: busybox}\n",
     "services: invalid name 'we b' (letters, digits, '_', '.', '-')"),
    ("services:\n  web: {image: busybox, environment: 5}\n",
     "services.web.environment: 5 is not of type 'mapping' or 'list'"),
    ("networks: {}\n", "top level: 'services' is a required property"),
    ("version: '2.4'\nservices:\n  web: {image: busybox}\n",
     "version: unsupported compose file version '2.4': stack deploy reads version 3 files (3, 3.0 … 3.9)"),
    ("- a\n- b\n", "top level: the compose file must be a mapping of keys (services, networks, …)"),
])
def test_validation_errors_are_one_line_naming_the_key(tmp_path, text, message):
    assert error_of(tmp_path, text) == message


def test_extension_keys_and_a_numeric_version_pass(tmp_path):
    plan = plan_of(tmp_path, """
        version: 3.9
        x-common: &common {image: busybox}
        services:
          web:
            <<: *common
            x-note: anything
    """)
    assert plan.services["demo_web"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox"


def test_keys_only_one_host_understands_are_ignored_with_docker_s_warning(tmp_path):
    plan = plan_of(tmp_path, """
        services:
          web: {image: busybox, build: ., container_name: w, depends_on: [db], privileged: true}
          db: {image: busybox}
    """)
    assert plan.warnings == ["Ignoring unsupported options: build, container_name, depends_on, privileged"]


def test_validate_accepts_a_full_document():
    validate({"version": "3", "services": {"a": {"image": "x", "deploy": {"replicas": 2}}}})


# --- interpolation and loading -----------------------------------------------------------------
def test_interpolation_forms():
    warnings: list[str] = []
    environ = {"TAG": "1.2", "EMPTY": ""}
    assert interpolate("busybox:${TAG}", environ, warnings) == "busybox:1.2"
    assert interpolate("$TAG/$$TAG", environ, warnings) == "1.2/$TAG"
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${NOPE-d}", environ, warnings) == "d  d"
    assert interpolate("${TAG:+set}${NOPE:+set}", environ, warnings) == "set"
    assert interpolate({"a": ["${NOPE}"]}, environ, warnings) == {"a": [""]}
    assert warnings == ["The NOPE variable is not set. Defaulting to a blank string."]
    with pytest.raises(ComposeError, match=r"^services.web.image: required variable TAG2 is missing a value: set it$"):
        interpolate({"services": {"web": {"image": "${TAG2:?set it}"}}}, environ, [])
    with pytest.raises(ComposeError, match=r"^x: invalid interpolation format for '\$\{1bad\}'$"):
        interpolate({"x": "${1bad}"}, environ, [])


def test_interpolation_happens_before_validation(tmp_path):
    plan = plan_of(tmp_path, "services:\n  web: {image: 'busybox:${TAG:-latest}', deploy: {replicas: 2}}\n")
    assert plan.services["demo_web"]["Labels"]["com.docker.stack.image"] == "busybox:latest"
    message = error_of(tmp_path, "services:\n  web: {image: busybox, stop_grace_period: '${GRACE}'}\n",
                       environ={"GRACE": "soon"})
    assert message == "services.web.stop_grace_period: 'soon' is not a 'duration'"


def test_load_errors(tmp_path):
    with pytest.raises(ComposeError, match=r"^open .*missing.yml: no such file or directory$"):
        load(tmp_path / "missing.yml", "demo", {})
    (tmp_path / "bad.yml").write_text("services:\n  web: [\n")
    with pytest.raises(ComposeError, match=r"bad.yml: line \d+ "):
        load(tmp_path / "bad.yml", "demo", {})


def test_stack_and_service_names_are_checked():
    with pytest.raises(ComposeError, match="^invalid stack name 'my stack'"):
        convert({"services": {"a": {"image": "x"}}}, "my stack", ".", {})
    with pytest.raises(ComposeError, match="is longer than 63 characters"):
        convert({"services": {"s" * 60: {"image": "x"}}}, "demo", ".", {})
