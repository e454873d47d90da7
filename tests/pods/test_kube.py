"""``kube play``/``down``/``generate`` with real containers: a Deployment of 2 replicas with a ConfigMap
volume, a Secret in the environment, an init container whose file the main container reads, a PVC."""

from __future__ import annotations

import base64
import json
import os
import time

import yaml

from tests.pods.test_pods import cli  # noqa: F401  (the fixture)

APP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello-from-configmap, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: %s}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: kubedata}
spec: {accessModes: [ReadWriteOnce]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      volumes:
      - {name: config, configMap: {name: settings}}
      - {name: shared, emptyDir: {}}
      - {name: data, persistentVolumeClaim: {claimName: kubedata}}
      initContainers:
      - name: first
        image: busybox
        command: [sh, -c, "echo one > /shared/order"]
        volumeMounts: [{name: shared, mountPath: /shared}]
      - name: second
        image: busybox
        command: [sh, -c, "echo two >> /shared/order"]
        volumeMounts: [{name: shared, mountPath: /shared}]
      containers:
      - name: main
        image: busybox
        command: [sh, -c]
        args: ["cat /config/greeting; echo; echo pw=$PASSWORD mode=$mode; cat /shared/order; exec sleep 300"]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: creds, key: password}}
        envFrom:
        - configMapRef: {name: settings}
          prefix: ""
        volumeMounts:
        - {name: config, mountPath: /config}
        - {name: shared, mountPath: /shared}
        - {name: data, mountPath: /data}
        securityContext: {capabilities: {drop: [NET_RAW]}}
        livenessProbe:
          exec: {command: [test, -f, /config/greeting]}
          periodSeconds: 5
""" % base64.b64encode(b"s3cret").decode()


def logs_of(cli, pod: str, want: str) -> str:
    for _ in range(50):
        out = cli("pod", "logs", pod, check=True).stdout
        if want in out:
            return out
        time.sleep(0.1)
    return out


def test_play_a_deployment_with_configmap_secret_init_containers_and_a_pvc_then_down(cli, tmp_path):
    app = tmp_path / "app.yaml"
    app.write_text(APP.replace("prefix: \"\"", "prefix: \"\"\n          colour: blue"))
    played = cli("kube", "play", str(app))
    assert played.returncode == 0, played.stderr
    assert "Warning: unknown field spec.template.spec.containers[0].envFrom[0].colour ignored" in played.stderr
    assert played.stdout.count("Pod: ") == 2 and "Volume: kubedata" in played.stdout
    for pod in ("app-pod-0", "app-pod-1"):
        out = logs_of(cli, pod, "two")
        assert out.splitlines() == [f"{pod}-main hello-from-configmap", f"{pod}-main pw=s3cret mode=fast",
                                    f"{pod}-main one", f"{pod}-main two"], out
    inspect = json.loads(cli("inspect", "app-pod-0-main", check=True).stdout)[0]
    assert inspect["HostConfig"]["CapDrop"] == ["NET_RAW"]
    assert inspect["Config"]["Healthcheck"]["Test"][-1] == "test -f /config/greeting"
    assert "kubedata" in cli("volume", "ls", "-q", check=True).stdout

    down = cli("kube", "down", str(app))
    assert down.returncode == 0 and down.stdout.count("Pod: ") == 2, down.stderr
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""
    cli("volume", "rm", "kubedata", check=True)


def test_generate_then_play_round_trips_a_pod(cli, tmp_path):
    cli("pod", "create", "--name", "gen", "--label", "team=a", check=True)
    cli("run", "-d", "--name", "gen-web", "--pod", "gen", "-e", "COLOUR=green", "busybox", "sh", "-c",
        "echo colour=$COLOUR; exec sleep 300", check=True)
    generated = cli("kube", "generate", "gen", check=True).stdout
    doc = yaml.safe_load(generated)
    assert doc["kind"] == "Pod" and doc["metadata"] == {"name": "gen", "labels": {"team": "a"}}
    assert doc["spec"]["containers"][0]["name"] == "web"
    cli("pod", "rm", "-f", "gen", check=True)

    replayed = cli("kube", "play", "-", input=generated)
    assert replayed.returncode == 0 and not replayed.stderr, replayed.stderr
    assert logs_of(cli, "gen", "colour=green") == "gen-web colour=green\n"
    cli("kube", "down", "-", input=generated, check=True)
    assert cli("ps", "-aq").stdout.strip() == ""


def test_a_wrong_type_is_an_error_naming_its_path_and_nothing_is_made(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n"
                   "  - name: c\n    image: busybox\n    ports:\n    - containerPort: eighty\n")
    result = cli("kube", "play", str(bad))
    assert result.returncode == 2
    assert result.error_lines == ["Error: spec.containers[0].ports[0].containerPort: expected an integer, "
                                  "got a string ('eighty')"]
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""
    refused = cli("kube", "play", "-", input="kind: Pod\nmetadata: {name: x}\nspec:\n  hostPID: true\n  containers: []\n")
    assert refused.returncode == 2 and refused.error_lines == ["Error: spec.hostPID: not supported by pallet"]


def test_a_nodeport_service_publishes_a_daemonsets_port_and_the_pod_pauses(cli, tmp_path):
    import urllib.request

    from pallet.kernel.network.ports import _random_port

    port = _random_port("tcp", "", set())
    doc = f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: edge}}
spec:
  selector: {{matchLabels: {{app: edge}}}}
  template:
    metadata: {{labels: {{app: edge}}}}
    spec:
      containers:
      - name: web
        image: busybox
        command: [sh, -c, "mkdir /www && echo served > /www/index.html && exec busybox httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {{name: edge}}
spec:
  type: NodePort
  selector: {{app: edge}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {port}}}]
"""
    cli("kube", "play", "-", input=doc, check=True)
    body = ""
    for _ in range(40):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                body = response.read().decode()
            break
        except OSError:
            time.sleep(0.1)
    assert body == "served\n"
    cli("pod", "pause", "edge-pod", check=True)
    assert json.loads(cli("pod", "inspect", "edge-pod", check=True).stdout)[0]["Status"] == "Paused"
    cli("pod", "unpause", "edge-pod", check=True)
    assert json.loads(cli("pod", "inspect", "edge-pod", check=True).stdout)[0]["Status"] == "Running"
    cli("kube", "down", "-", input=doc, check=True)
    assert cli("ps", "-aq").stdout.strip() == ""


def test_a_failing_liveness_probe_restarts_the_container(cli):
    doc = """
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "echo run; touch /tmp/ok; sleep 2; rm /tmp/ok; exec sleep 300"]
    livenessProbe:
      exec: {command: [test, -f, /tmp/ok]}
      periodSeconds: 1
      failureThreshold: 1
"""
    cli("kube", "play", "-", input=doc, check=True)
    restarts = 0
    for _ in range(300):
        restarts = json.loads(cli("inspect", "live-app", check=True).stdout)[0]["RestartCount"]
        if restarts >= 1:
            break
        time.sleep(0.1)
    assert restarts >= 1, "the probe failed once the file was gone, so the container was restarted"
    assert logs_of(cli, "live", "run\nlive-app run").count("run") >= 2
    cli("kube", "down", "-", input=doc, check=True)


def test_security_context_resources_host_path_and_restart_policy_reach_the_container(cli, tmp_path):
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "f.txt").write_text("from-host\n")
    doc = f"""
apiVersion: v1
kind: Pod
metadata: {{name: sec}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: h, hostPath: {{path: {host_dir}}}}}
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "id -u; cat /h/f.txt; touch /x 2>/dev/null && echo writable || echo read-only; exec sleep 300"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    resources: {{limits: {{memory: 64Mi}}}}
    securityContext: {{runAsUser: 1000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}}
"""
    played = cli("kube", "play", "-", input=doc)
    assert played.returncode == 0, played.stderr
    assert logs_of(cli, "sec", "read-only") == "sec-c 1000\nsec-c from-host\nsec-c read-only\n"
    info = json.loads(cli("inspect", "sec-c", check=True).stdout)[0]
    assert info["Config"]["User"] == "1000"
    host_config = info["HostConfig"]
    assert (host_config["Memory"], host_config["ReadonlyRootfs"]) == (64 * 1024 * 1024, True)
    assert host_config["RestartPolicy"]["Name"] == "no"
    assert "no-new-privileges" in " ".join(host_config.get("SecurityOpt") or []), host_config.get("SecurityOpt")
    cli("kube", "down", "-", input=doc, check=True)
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""


def _own_status(key: str) -> str:
    return next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key))


def test_host_network_privileged_and_seccomp_profiles(cli, tmp_path):
    """hostNetwork: every container sees the host's netns; privileged gets every capability;
    seccompProfile Unconfined has no filter, RuntimeDefault pallet's, Localhost the file's rules."""
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    show = "readlink /proc/self/ns/net; grep -E '^(Seccomp|CapEff):' /proc/self/status | tr -s '\\t' ' '"
    doc = f"""
apiVersion: v1
kind: Pod
metadata: {{name: hn}}
spec:
  hostNetwork: true
  containers:
  - name: priv
    image: busybox
    command: [sh, -c, "{show}; echo done; exec sleep 300"]
    securityContext: {{privileged: true, seccompProfile: {{type: Unconfined}}}}
  - name: dflt
    image: busybox
    command: [sh, -c, "{show}; echo done; exec sleep 300"]
    securityContext: {{seccompProfile: {{type: RuntimeDefault}}}}
  - name: local
    image: busybox
    command: [sh, -c, "mkdir /made 2>/dev/null && echo made || echo refused; echo done; exec sleep 300"]
    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: {profile}}}}}
"""
    played = cli("kube", "play", "-", input=doc)
    assert played.returncode == 0, played.stderr
    try:
        host_netns = os.readlink("/proc/self/ns/net")
        for name in ("priv", "dflt", "local"):
            for _ in range(100):
                out = cli("logs", f"hn-{name}", check=True).stdout
                if "done" in out:
                    break
                time.sleep(0.1)
            lines = out.splitlines()
            if name == "local":
                assert lines[0] == "refused", out
                continue
            status = dict(line.split(" ", 1) for line in lines[1:3])
            assert lines[0] == host_netns, (name, out)
            if name == "priv":
                assert status["Seccomp:"] == "0" and status["CapEff:"] == _own_status("CapEff:"), out
            else:
                assert status["Seccomp:"] == "2" and int(status["CapEff:"], 16) == 0xa80425fb, out
    finally:
        cli("kube", "down", "-", input=doc, check=True)
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""


def test_an_unknown_seccomp_profile_type_is_an_error_naming_its_path(cli):
    doc = """
apiVersion: v1
kind: Pod
metadata: {name: badsc}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, "1"], securityContext: {seccompProfile: {type: Strict}}}
"""
    played = cli("kube", "play", "-", input=doc)
    assert played.returncode != 0
    assert "spec.containers[0].securityContext.seccompProfile.type: 'Strict' is not one of" in played.stderr
    assert "Traceback" not in played.stderr
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""


def test_generate_of_a_plain_container_plays_back_as_a_pod(cli):
    cli("run", "-d", "--name", "solo", "-e", "WHO=solo", "busybox", "sh", "-c", "echo who=$WHO; exec sleep 300",
        check=True)
    generated = cli("kube", "generate", "solo", check=True).stdout
    doc = yaml.safe_load(generated)
    assert doc["kind"] == "Pod" and len(doc["spec"]["containers"]) == 1, doc
    assert {"name": "WHO", "value": "solo"} in doc["spec"]["containers"][0]["env"]
    cli("rm", "-f", "solo", check=True)
    replayed = cli("kube", "play", "-", input=generated)
    assert replayed.returncode == 0 and not replayed.stderr, replayed.stderr
    pod = doc["metadata"]["name"]
    assert "who=solo" in logs_of(cli, pod, "who=solo")
    cli("kube", "down", "-", input=generated, check=True)
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""
