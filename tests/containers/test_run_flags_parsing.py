"""Pure parts of run's flags: Docker's value formats and the resolv.conf overrides."""

from __future__ import annotations

import pytest

from pallet.kernel import hostopts, policyopts, runopts
from pallet.kernel.errors import UsageError
from pallet.kernel.sandbox import override_resolv_conf


def test_value_formats_parse_like_dockers():
    assert hostopts.parse_extra_host("a:1.2.3.4") == "a:1.2.3.4"
    assert hostopts.parse_extra_host("gw=host-gateway") == "gw:host-gateway"
    assert hostopts.parse_device("/dev/sda:/dev/xvda:r") == {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda",
                                                          "CgroupPermissions": "r"}
    assert hostopts.parse_device("/dev/fuse")["PathInContainer"] == "/dev/fuse"
    assert hostopts.parse_throttle_device("/dev/vda:1mb", "--device-read-bps", True) == {"Path": "/dev/vda",
                                                                                        "Rate": 1 << 20}
    assert policyopts.parse_duration("1m30s", "--health-interval") == 90 * 10**9
    assert policyopts.parse_duration("500ms", "--health-timeout") == 500 * 10**6
    assert policyopts.parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert policyopts.parse_expose(["80", "53/udp"]) == {"80/tcp": {}, "53/udp": {}}
    assert hostopts.parse_namespace_mode("container:web", "--pid") == "container:web"
    assert runopts.parse_mount('type=volume,src=v,dst=/v,"volume-opt=o=a,b",volume-opt=type=tmpfs')["DriverOpts"] == {
        "o": "a,b", "type": "tmpfs"}


@pytest.mark.parametrize("call", [
    lambda: hostopts.parse_extra_host("nohost"),
    lambda: hostopts.parse_extra_host("a:not-an-ip"),
    lambda: hostopts.parse_device("dev/sda"),
    lambda: hostopts.parse_device_cgroup_rule("x 1:2 rwm"),
    lambda: hostopts.parse_weight_device("/dev/sda:5"),
    lambda: policyopts.parse_duration("10 parsecs", "--health-interval"),
    lambda: policyopts.parse_restart("sometimes"),
    lambda: policyopts.parse_restart("always:3"),
    lambda: hostopts.parse_namespace_mode("container:x", "--cgroupns"),   # --uts takes it (podman's, for pods)
    lambda: hostopts.parse_sysctl("vm.swappiness=1"),
    lambda: policyopts.parse_detach_keys("ctrl-pp"),
    lambda: runopts.parse_mount("type=npipe,src=a,dst=/b"),
    lambda: runopts.parse_mount("type=bind,src=/a,dst=/b,bind-recursive=readonly"),
])
def test_bad_values_are_usage_errors(call):
    with pytest.raises(UsageError):
        call()


def test_resolv_conf_overrides_replace_their_own_lines_and_keep_the_embedded_dns():
    host = "# generated\nnameserver 10.0.0.1\nsearch corp\noptions edns0\n"
    assert override_resolv_conf(host, {"servers": ["9.9.9.9"], "options": ["ndots:1"]}) == (
        "# generated\nnameserver 9.9.9.9\nsearch corp\noptions ndots:1\n")
    assert override_resolv_conf(host, {"search": ["."]}) == "# generated\nnameserver 10.0.0.1\noptions edns0\n"
    embedded = "nameserver 127.0.0.11\noptions ndots:0\n"
    assert override_resolv_conf(embedded, {"servers": ["9.9.9.9"], "search": ["a.b"]}) == (
        "nameserver 127.0.0.11\nsearch a.b\noptions ndots:0\n")
    assert override_resolv_conf(host, {}) == host


def test_commit_changes_take_every_instruction_docker_accepts():
    from pallet.kernel.cli.commit_changes import apply_changes

    config = apply_changes({"Env": ["PATH=/bin"], "Labels": {"a": "1"}}, [
        "EXPOSE 80 53/udp", 'VOLUME ["/data"]', "VOLUME /logs /tmp/x", "STOPSIGNAL SIGINT", "ONBUILD RUN echo hi",
        "HEALTHCHECK --interval=5s --retries=2 CMD true", 'ENV A=1 B="two words"', "ENV C legacy form",
        'SHELL ["/bin/ash", "-c"]', "CMD echo x", 'ENTRYPOINT ["/init"]', "LABEL k=v", "USER nobody",
        "WORKDIR /srv"])
    assert config == {
        "Env": ["PATH=/bin", "A=1", "B=two words", "C=legacy form"], "Labels": {"a": "1", "k": "v"},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}, "/logs": {}, "/tmp/x": {}},
        "StopSignal": "SIGINT", "OnBuild": ["RUN echo hi"],
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9, "Timeout": 0, "StartPeriod": 0,
                        "StartInterval": 0, "Retries": 2},
        "Shell": ["/bin/ash", "-c"], "Cmd": ["/bin/ash", "-c", "echo x"], "Entrypoint": ["/init"], "User": "nobody",
        "WorkingDir": "/srv"}
    assert apply_changes({}, ["HEALTHCHECK NONE"]) == {"Healthcheck": {"Test": ["NONE"]}}
    for bad in ("FROM busybox", "ONBUILD FROM x", "STOPSIGNAL NOPE", "SHELL bash", "HEALTHCHECK --bogus=1 CMD x"):
        with pytest.raises(Exception) as err:
            apply_changes({}, [bad])
        assert err.type.__name__ in ("UsageError",), bad
