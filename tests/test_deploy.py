"""The docker-compose deployment, tested without a Docker engine.

* ``docker-compose config`` (Debian's docker-compose 1.29, the real binary)
  accepts docker-compose.yml; every other compose check reads *its* resolved
  output, so interpolation and YAML anchors are the ones Docker would use;
* deploy/entrypoint.py: SC_LINK_* -> ``tc qdisc ... netem`` command lines,
  clear errors for bad values, privilege drop, and the script itself run
  with ``--dry-run`` / ``--no-links`` as a subprocess. No test runs tc for
  real: CI runs as root and could reshape the host's interface;
* Prometheus scrapes every compose service that listens, and only those;
  Grafana's datasource, dashboard provider and mounts agree; every metric the
  dashboard queries is defined in shiftcraft/metric_names.py;
* "the same configuration without Docker": the compose services' very
  commands and environments run as plain processes (through the entrypoint,
  with --no-links), service host names replaced by 127.0.0.1 and ports by
  free ones; each answers /metrics, passes its compose healthcheck, and
  exports every metric the dashboard queries, with the type the query needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from shiftcraft import metric_names

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
ENTRYPOINT = REPO / "deploy" / "entrypoint.py"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "shiftcraft.json"
IMAGE_ROOT = "/opt/shiftcraft"  # where the Dockerfile puts the repository

APT_HINT = (
    "docker-compose is not installed: .ci/run must install the Debian package "
    "`docker-compose` (apt-get install -y docker-compose); there is no Docker engine, "
    "only `docker-compose config` is used"
)
SHIFTCRAFT_METRICS = {
    v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str)
}

pytestmark = pytest.mark.timeout(240)


def load_entrypoint() -> ModuleType:
    # deploy/ is not a package (it is copied into the image, not installed).
    spec = importlib.util.spec_from_file_location("sc_deploy_entrypoint", ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ep = load_entrypoint()


# -- docker-compose config ---------------------------------------------------------------------


def docker_compose(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(APT_HINT, pytrace=False)
    # A stray GRAFANA_ADMIN_PASSWORD or COMPOSE_* in the CI environment must not
    # change what is validated.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "GRAFANA_"))}
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yml as docker-compose itself resolves it."""
    result = docker_compose("-f", str(COMPOSE_FILE), "config")
    assert result.returncode == 0, f"docker-compose config rejected the file:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {
        "sim", "render-edge", "render-cloud", "scheduler", "prometheus", "grafana", "bots",
    }  # fmt: skip
    # One image for every Shiftcraft service, built from the Dockerfile.
    ours = [s for s in services.values() if s.get("image") == "shiftcraft:latest"]
    assert len(ours) == 5
    for svc in ours:
        assert Path(svc["build"]["context"]) == REPO
        assert (REPO / svc["build"]["dockerfile"]).is_file()
        assert svc["command"][0] == "shiftcraft"
    # Bots only on demand; the sim's world on a named volume.
    assert services["bots"]["profiles"] == ["bots"]
    sim_volumes = services["sim"]["volumes"]
    assert any(v.startswith("sim-data:/data") for v in sim_volumes), sim_volumes
    assert "sim-data" in compose["volumes"]
    db = services["sim"]["command"][services["sim"]["command"].index("--db") + 1]
    assert db.startswith("/data/")


def test_docker_compose_config_rejects_a_bad_file(tmp_path: Path) -> None:
    # The validation the CI relies on has teeth: an unknown option fails.
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  sim:\n    image: shiftcraft:latest\n    cap_addd: [NET_ADMIN]\n")
    result = docker_compose("-f", str(bad), "config", cwd=tmp_path)
    assert result.returncode != 0
    assert "cap_addd" in result.stderr


def test_render_nodes_shape_their_links_and_only_they(compose: dict) -> None:
    services = compose["services"]
    delays = {}
    for name in ("render-edge", "render-cloud"):
        svc = services[name]
        # tc needs CAP_NET_ADMIN, held only by root; the entrypoint then drops to SC_RUN_AS.
        assert svc["cap_add"] == ["NET_ADMIN"]
        assert svc["user"] == "root"
        env = svc["environment"]
        cfg = ep.link_config_from_env(env)  # the entrypoint accepts the compose values
        assert ep.tc_commands(cfg), f"{name} sets no link condition"
        delays[name] = cfg.delay_ms
        assert env["SC_SCHEDULER_URL"] == "ws://scheduler:8780"
        assert env["SC_NODE_LOCATION"] == name.removeprefix("render-")
    assert delays["render-cloud"] > delays["render-edge"] > 0
    for name in ("sim", "scheduler", "bots"):
        assert "cap_add" not in services[name] and "user" not in services[name]
        assert not ep.tc_commands(ep.link_config_from_env(services[name].get("environment", {})))


def test_dockerfile_matches_the_entrypoint_and_compose() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "iproute2" in text  # tc
    assert f'ENTRYPOINT ["python", "{IMAGE_ROOT}/deploy/entrypoint.py"]' in text
    assert f"WORKDIR {IMAGE_ROOT}" in text
    assert "SC_RUN_AS=shiftcraft" in text and "useradd" in text and "USER shiftcraft" in text
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
    # The build context must keep what the image runs.
    for needed in ("deploy", "deploy/entrypoint.py", "README.md", "pyproject.toml", "renderer"):
        assert needed not in ignored, needed


# -- entrypoint: env -> tc ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"SC_LINK_DELAY_MS": "", "SC_LINK_LOSS_PCT": " "}, []),
        ({"SC_LINK_DELAY_MS": "0", "SC_LINK_LOSS_PCT": "0"}, []),
        (
            {"SC_LINK_DELAY_MS": "45"},
            ["tc qdisc replace dev eth0 root netem delay 45ms"],
        ),
        (
            {"SC_LINK_DELAY_MS": "7.5", "SC_LINK_JITTER_MS": "2.5", "SC_LINK_IFACE": "veth0"},
            ["tc qdisc replace dev veth0 root netem delay 7.5ms 2.5ms"],
        ),
        (
            {"SC_LINK_LOSS_PCT": "0.5"},
            ["tc qdisc replace dev eth0 root netem loss random 0.5%"],
        ),
        (
            {"SC_LINK_RATE_MBIT": "7.21"},
            ["tc qdisc replace dev eth0 root netem rate 7.21mbit"],
        ),
        (
            {
                "SC_LINK_DELAY_MS": "90",
                "SC_LINK_JITTER_MS": "10",
                "SC_LINK_LOSS_PCT": "1",
                "SC_LINK_RATE_MBIT": "100",
            },
            ["tc qdisc replace dev eth0 root netem delay 90ms 10ms loss random 1% rate 100mbit"],
        ),
        (
            {"SC_LINK_DELAY_MS": "1e3", "SC_LINK_RATE_MBIT": "0.25"},
            ["tc qdisc replace dev eth0 root netem delay 1000ms rate 0.25mbit"],
        ),
    ],
)
def test_tc_commands_from_env(env: dict, expected: list[str]) -> None:
    commands = ep.tc_commands(ep.link_config_from_env(env))
    assert [" ".join(c) for c in commands] == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SC_LINK_DELAY_MS": "45ms"}, "SC_LINK_DELAY_MS='45ms': expected a plain number"),
        ({"SC_LINK_RATE_MBIT": "7mbit"}, "SC_LINK_RATE_MBIT='7mbit': expected a plain number"),
        ({"SC_LINK_DELAY_MS": "-5"}, "SC_LINK_DELAY_MS=-5: must be within 0..60000"),
        ({"SC_LINK_DELAY_MS": "nan"}, "SC_LINK_DELAY_MS='nan': expected a finite number"),
        ({"SC_LINK_DELAY_MS": "90000"}, "SC_LINK_DELAY_MS=90000: must be within"),
        ({"SC_LINK_JITTER_MS": "5"}, "SC_LINK_JITTER_MS=5 exceeds SC_LINK_DELAY_MS=0"),
        (
            {"SC_LINK_DELAY_MS": "10", "SC_LINK_JITTER_MS": "20"},
            "SC_LINK_JITTER_MS=20 exceeds SC_LINK_DELAY_MS=10",
        ),
        ({"SC_LINK_LOSS_PCT": "150"}, "SC_LINK_LOSS_PCT=150: must be a percentage"),
        ({"SC_LINK_LOSS_PCT": "-1"}, "SC_LINK_LOSS_PCT=-1: must be a percentage"),
        ({"SC_LINK_RATE_MBIT": "0"}, "leave it unset for no rate limit"),
        ({"SC_LINK_RATE_MBIT": "7210000"}, "SC_LINK_RATE_MBIT=7.21e+06: must be within"),
        ({"SC_LINK_IFACE": "eth0; reboot"}, "SC_LINK_IFACE='eth0; reboot'"),
        ({"SC_LINK_IFACE": "a-very-long-interface"}, "expected an interface name"),
    ],
)
def test_bad_link_values_are_clear_errors(env: dict, message: str) -> None:
    with pytest.raises(ep.LinkConfigError) as exc:
        ep.link_config_from_env(env)
    assert message in str(exc.value)


def _completed(rc: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, "", stderr)


def test_apply_links_runs_tc_only_with_net_admin() -> None:
    commands = ep.tc_commands(ep.link_config_from_env({"SC_LINK_DELAY_MS": "20"}))
    ran: list[list[str]] = []

    def run(cmd):
        ran.append(list(cmd))
        return _completed(0)

    # Without the capability nothing runs, and the reason says how to get it.
    why = ep.apply_links(commands, net_admin=False, tc_path="/sbin/tc", run=run)
    assert ran == [] and "NET_ADMIN" in why and "NOT applied" in why
    why = ep.apply_links(commands, net_admin=True, tc_path=None, run=run)
    assert ran == [] and "iproute2" in why
    # With it, the exact command line, through the tc found on PATH.
    assert ep.apply_links(commands, net_admin=True, tc_path="/sbin/tc", run=run) is None
    assert ran == [
        ["/sbin/tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "20ms"]
    ]
    # Nothing configured: nothing to run, not an error.
    assert ep.apply_links([], net_admin=False, tc_path=None, run=run) is None


def test_apply_links_explains_a_kernel_without_netem() -> None:
    commands = ep.tc_commands(ep.link_config_from_env({"SC_LINK_DELAY_MS": "20"}))
    err = "Error: Specified qdisc kind is unknown.\n"
    why = ep.apply_links(commands, net_admin=True, tc_path="tc", run=lambda cmd: _completed(2, err))
    assert "rc=2" in why and "sch_netem" in why


def test_has_net_admin_reads_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")  # bit 12 only
    assert ep.has_net_admin(str(status))
    status.write_text("Name:\tx\nCapEff:\t00000000a80425fb\n")  # Docker's default set
    assert not ep.has_net_admin(str(status))
    assert not ep.has_net_admin(str(tmp_path / "missing"))


def test_links_only_without_capability_fails(monkeypatch, capsys) -> None:
    monkeypatch.setattr(ep, "has_net_admin", lambda: False)
    assert ep.main(["--links-only"], {"SC_LINK_DELAY_MS": "5"}) == 1
    assert "NOT applied" in capsys.readouterr().err
    # Strict mode makes it fatal before the service too (exec never reached).
    env = {"SC_LINK_DELAY_MS": "5", "SC_LINK_STRICT": "1"}
    assert ep.main(["true"], env) == 1


# -- entrypoint as a script --------------------------------------------------------------------


def run_entrypoint(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_dry_run_prints_the_commands() -> None:
    env = {"SC_LINK_DELAY_MS": "90", "SC_LINK_JITTER_MS": "10", "SC_LINK_RATE_MBIT": "7.21"}
    result = run_entrypoint("--dry-run", "--", "shiftcraft", "server", "--port", "8765", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tc qdisc replace dev eth0 root netem delay 90ms 10ms rate 7.21mbit",
        "exec shiftcraft server --port 8765",
    ]


def test_entrypoint_rejects_bad_values_before_starting_anything() -> None:
    result = run_entrypoint("--dry-run", "shiftcraft", env={"SC_LINK_LOSS_PCT": "lots"})
    assert result.returncode == 2
    assert "bad link configuration: SC_LINK_LOSS_PCT='lots'" in result.stderr
    assert result.stdout == ""
    result = run_entrypoint()
    assert result.returncode == 2 and "no command given" in result.stderr


def test_entrypoint_execs_the_command_and_says_what_it_skipped() -> None:
    code = "import os, sys; print('service', sys.argv[1], os.getpid())"
    result = run_entrypoint(
        "--no-links", sys.executable, "-c", code, "ok", env={"SC_LINK_DELAY_MS": "15"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("service ok ")
    assert "--no-links: NOT running: tc qdisc replace dev eth0 root netem delay 15ms" in (
        result.stderr
    )
    result = run_entrypoint("--no-links", sys.executable, "-c", code, "ok")
    assert "no link conditions set" in result.stderr
    result = run_entrypoint("--no-links", "no-such-command-here")
    assert result.returncode == 127 and "cannot exec 'no-such-command-here'" in result.stderr


@pytest.mark.requires("nobody")
def test_entrypoint_drops_root_to_sc_run_as() -> None:
    import pwd

    # sh, not this interpreter: `nobody` may not read a virtualenv under /root.
    code = "echo $(id -u) $(id -g)"
    result = run_entrypoint("--no-links", "sh", "-c", code, env={"SC_RUN_AS": "nobody"})
    assert result.returncode == 0, result.stderr
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        assert result.stdout.split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
        result = run_entrypoint("--no-links", "true", env={"SC_RUN_AS": "no-such-user"})
        assert result.returncode != 0 and "SC_RUN_AS='no-such-user': no such user" in (
            result.stderr
        )
    else:  # not root: nothing to drop
        assert result.stdout.split()[0] == str(os.getuid())


# -- Prometheus and Grafana -----------------------------------------------------------------


def listen_port(service: dict) -> int | None:
    """The port a compose service listens on: its `expose` (one per service here)."""
    exposed = service.get("expose") or []
    assert len(exposed) <= 1, exposed
    return int(exposed[0]) if exposed else None


def scrape_jobs() -> dict[str, dict]:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def test_every_listening_service_is_scraped_and_only_those(compose: dict) -> None:
    services = compose["services"]
    expected = {f"{name}:{port}" for name, svc in services.items() if (port := listen_port(svc))}
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    assert targets == expected
    # Only the bots listen nowhere (and so have no target).
    assert {n for n, s in services.items() if listen_port(s) is None} == {"bots"}
    # Scrape every 1-5 s, each scrape shorter than the interval.
    glob = config["global"]
    for job in config["scrape_configs"]:
        interval = _seconds(job.get("scrape_interval", glob["scrape_interval"]))
        timeout = _seconds(job.get("scrape_timeout", glob["scrape_timeout"]))
        assert 1 <= interval <= 5 and timeout <= interval, job["job_name"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
    # Prometheus reads the file the compose file mounts.
    prom = services["prometheus"]
    mount = next(v for v in prom["volumes"] if v.startswith(str(PROMETHEUS_YML) + ":"))
    assert f"--config.file={mount.split(':')[1]}" in prom["command"]


def test_ports_commands_and_healthchecks_agree(compose: dict) -> None:
    for name, svc in compose["services"].items():
        port = listen_port(svc)
        if port is None:
            continue
        if svc.get("command", [""])[0] == "shiftcraft":
            cmd = svc["command"]
            assert cmd[cmd.index("--port") + 1] == str(port), name
            assert cmd[cmd.index("--host") + 1] == "0.0.0.0", name  # reachable by service name
            assert svc["healthcheck"]["test"][:3] == [
                "CMD", "python", f"{IMAGE_ROOT}/deploy/healthcheck.py",
            ]  # fmt: skip
        assert svc["healthcheck"]["test"][-1].startswith(f"http://127.0.0.1:{port}/"), name
        assert any(p["target"] == port for p in svc["ports"]), name


def test_grafana_provisioning_agrees_with_compose(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert mounts[str(GRAFANA / "provisioning")] == "/etc/grafana/provisioning"
    dash_dir = mounts[str(GRAFANA / "dashboards")]

    (ds_file,) = (GRAFANA / "provisioning" / "datasources").glob("*.yml")
    (datasource,) = yaml.safe_load(ds_file.read_text())["datasources"]
    prom_port = listen_port(compose["services"]["prometheus"])
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{prom_port}"

    (prov_file,) = (GRAFANA / "provisioning" / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(prov_file.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == dash_dir
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_dir + "/")
    assert (GRAFANA / "dashboards" / home.removeprefix(dash_dir + "/")).is_file()

    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if "targets" in panel:
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


METRIC_RE = re.compile(r"\b(shiftcraft_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_metrics() -> dict[str, set[str]]:
    """Metric name as queried (with any _bucket suffix) -> titles of the panels using it."""
    dashboard = json.loads(DASHBOARD.read_text())
    used: dict[str, set[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = METRIC_RE.findall(target["expr"])
            assert names, f"{panel['title']}: {target['expr']!r} queries no shiftcraft metric"
            for name in names:
                used.setdefault(name, set()).add(panel["title"])
    return used


def base_name(queried: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if queried.endswith(suffix) and queried.removesuffix(suffix) in SHIFTCRAFT_METRICS:
            return queried.removesuffix(suffix)
    return queried


def test_dashboard_is_valid_and_queries_only_defined_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Shiftcraft"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]
    used = dashboard_metrics()
    undefined = {
        name: sorted(t) for name, t in used.items() if base_name(name) not in SHIFTCRAFT_METRICS
    }
    assert not undefined, f"not in shiftcraft/metric_names.py: {undefined}"
    # The experiment report's panels (what an operator looks at first).
    m = metric_names
    for needed in (
        m.SERVER_TICK_DURATION_SECONDS, m.SERVER_PLAYERS, m.SERVER_SENT_BYTES_TOTAL,
        m.SERVER_RECEIVED_BYTES_TOTAL, m.SERVER_SECTIONS_SENT_TOTAL, m.SERVER_EDITS_APPLIED_TOTAL,
        m.RENDER_SESSIONS, m.RENDER_ENCODE_DURATION_SECONDS, m.RENDER_FRAMES_TOTAL,
        m.RENDER_SENT_BYTES_TOTAL, m.SCHEDULER_DECISIONS_TOTAL,
        m.SCHEDULER_MIGRATION_GAP_SECONDS,
    ):  # fmt: skip
        assert needed in {base_name(n) for n in used}, f"no panel shows {needed}"


# -- the same configuration without Docker ------------------------------------------------


@dataclass
class Started:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path
    command: list[str] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_order(services: dict[str, dict]) -> list[str]:
    """Services in dependency order (depends_on first), as compose starts them."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in services[name].get("depends_on", {}):
                visit(dep)
            order.append(name)

    for name in sorted(services):
        visit(name)
    return order


def localise(args: list[str], addresses: dict[str, str], volumes: dict[str, Path]) -> list[str]:
    """A compose command for this machine: bind loopback on any free port, reach
    other services at the ports they really got, keep volumes in a temp dir."""
    out = list(args)
    for i, arg in enumerate(out):
        if i and out[i - 1] == "--port":
            out[i] = "0"  # the service prints the port it got
            continue
        if i and out[i - 1] == "--host" and arg == "0.0.0.0":
            out[i] = "127.0.0.1"  # no need to listen on every interface of a CI machine
            continue
        for hostport, local in addresses.items():
            arg = re.sub(rf"(?<![\w.-]){re.escape(hostport)}\b", local, arg)
        for target, local_dir in volumes.items():
            if arg == target or arg.startswith(target + "/"):
                arg = str(local_dir) + arg[len(target) :]
        out[i] = arg
    return out


def read_listening_line(proc: subprocess.Popen, log: Path, timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"no 'listening on' line (rc={proc.returncode}):\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            line += os.read(proc.stdout.fileno(), 1)
    text = line.decode().strip()
    assert text.startswith("listening on ws://"), text
    return int(text.rsplit(":", 1)[1])


def service_env(svc: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
    # `shiftcraft` as the image has it on PATH: this interpreter's console script.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch(name: str, svc: dict, addresses: dict, tmp: Path, *, wait_port: bool) -> Started:
    volumes = {}
    for spec in svc.get("volumes", []):
        vol, target = spec.split(":")[:2]
        volumes[target] = tmp / name / vol
        volumes[target].mkdir(parents=True, exist_ok=True)
    command = localise(svc["command"], addresses, volumes)
    log = tmp / f"{name}.log"
    with open(log, "wb") as err:
        # Through the image's entrypoint, as the container would; --no-links because
        # reshaping this machine's interface is not the test's business.
        proc = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), "--no-links", *command],
            cwd=tmp,
            env=service_env(svc),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    # A render node compiles the ray-caster on a cold numba cache (tens of seconds).
    port = read_listening_line(proc, log, timeout=150.0) if wait_port else 0
    return Started(name, proc, port, log, command)


def compose_services_to_run(compose: dict) -> list[str]:
    """What `docker-compose up` starts from the Shiftcraft image (no profile)."""
    services = compose["services"]
    ours = {n for n, s in services.items() if s.get("command", [""])[0] == "shiftcraft"}
    return [n for n in start_order(services) if n in ours and not services[n].get("profiles")]


@pytest.fixture(scope="module")
def stack(compose: dict, tmp_path_factory) -> Iterator[dict[str, Started]]:
    tmp = tmp_path_factory.mktemp("stack")
    services = compose["services"]
    addresses: dict[str, str] = {}  # "sim:8765" -> "127.0.0.1:41234"
    started: dict[str, Started] = {}
    try:
        for name in compose_services_to_run(compose):
            svc = services[name]
            started[name] = launch(name, svc, addresses, tmp, wait_port=True)
            addresses[f"{name}:{listen_port(svc)}"] = f"127.0.0.1:{started[name].port}"
    except BaseException:
        for proc in reversed(list(started.values())):
            proc.stop()
        raise
    yield started
    # SIGTERM, as `docker-compose stop` sends: each must shut down cleanly.
    codes = {proc.name: proc.stop() for proc in reversed(list(started.values()))}
    bad = {name: rc for name, rc in codes.items() if rc != 0}
    assert not bad, "\n".join(
        f"{n} exited {rc}:\n{started[n].log.read_text()[-2000:]}" for n, rc in bad.items()
    )


def test_same_services_run_without_docker(compose: dict, stack: dict[str, Started]) -> None:
    assert set(stack) == {"sim", "scheduler", "render-edge", "render-cloud"}
    for name, proc in stack.items():
        status, text = proc.get("/metrics")
        assert status == 200, name
        assert "# TYPE shiftcraft_" in text, name
        # The entrypoint saw the compose environment: the render nodes' link
        # conditions were built (and, with --no-links, not applied here).
        log = proc.log.read_text()
        if name.startswith("render-"):
            assert "--no-links: NOT running: tc qdisc replace dev eth0 root netem" in log
        else:
            assert "no link conditions set" in log
    # The world went to the sim's volume (a temp dir here), as in the container.
    sim_cmd = stack["sim"].command
    assert Path(sim_cmd[sim_cmd.index("--db") + 1]).is_file()


def test_compose_healthchecks_pass(compose: dict, stack: dict[str, Started]) -> None:
    for name, proc in stack.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        port = listen_port(compose["services"][name])
        cmd = [
            sys.executable if arg == "python" else arg.replace(IMAGE_ROOT, str(REPO))
            for arg in test[1:]
        ]
        cmd[-1] = cmd[-1].replace(f":{port}/", f":{proc.port}/")
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def exported_types(stack: dict[str, Started]) -> dict[str, str]:
    types: dict[str, str] = {}
    for proc in stack.values():
        _, text = proc.get("/metrics")
        for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
            types[m.group(1)] = m.group(2)
    return types


@pytest.fixture(scope="module")
def player_metrics(stack: dict[str, Started], tmp_path_factory) -> Iterator[str]:
    """/metrics of a player's client against the stack (a client is not a compose
    service: it runs on the player's machine and is scraped through file_sd)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("player") / "player.log"
    cmd = [
        sys.executable, "-m", "shiftcraft", "play", "--headless", "--res", "160x90",
        "--server", f"ws://127.0.0.1:{stack['sim'].port}", "--name", "watched",
        "--device", "phone", "--metrics-port", str(port), "--seconds", "300",
        "--render", "remote", "--render-node", f"ws://127.0.0.1:{stack['render-edge'].port}",
    ]  # fmt: skip
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 240.0  # a cold numba cache compiles first
        text = ""
        # Streaming from the edge node, so the node RTT is known too.
        wanted = ("shiftcraft_client_fps ", "_rtt_sim_seconds ", "_rtt_node_seconds ")
        while not all(w in text for w in wanted):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/metrics"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        yield text
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dashboard_metrics_are_exported_with_the_right_type(
    stack: dict[str, Started], player_metrics: str
) -> None:
    types = exported_types(stack)
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", player_metrics, re.M):
        types[m.group(1)] = m.group(2)
    for queried, panels in dashboard_metrics().items():
        base = base_name(queried)
        # Depending on its version, prometheus-client's TYPE line names a counter
        # with or without `_total`.
        family = base if base in types else base.removesuffix("_total")
        assert family in types, f"{queried} ({sorted(panels)}): no service exports it"
        if queried != base:
            assert types[family] == "histogram", f"{queried}: {family} is a {types[family]}"
        if base.endswith("_total"):
            assert types[family] == "counter", f"{base} is a {types[family]}"


def test_compose_bots_command_joins_the_sim(compose: dict, stack: dict[str, Started]) -> None:
    svc = compose["services"]["bots"]
    addresses = {f"sim:{listen_port(compose['services']['sim'])}": f"127.0.0.1:{stack['sim'].port}"}
    bots = launch("bots", svc, addresses, stack["sim"].log.parent, wait_port=False)
    count = int(svc["command"][svc["command"].index("--count") + 1])
    try:
        deadline = time.monotonic() + 30
        joined = 0
        while time.monotonic() < deadline and bots.proc.poll() is None:
            _, text = stack["sim"].get("/stats")
            joined = json.loads(text)["players_by_role"].get("bot", 0)
            if joined >= count:
                break
            time.sleep(0.25)
        assert joined >= count, bots.log.read_text()[-2000:]
    finally:
        rc = bots.stop()
    out = bots.proc.stdout.read().decode() if bots.proc.stdout else ""
    assert rc == 0, bots.log.read_text()[-2000:]
    assert out.strip(), "the bots printed no summary"


def test_promtool_finds_nothing_to_complain_about(
    stack: dict[str, Started], player_metrics: str
) -> None:
    """Every service's /metrics and a client's pass `promtool check metrics` (the
    linter of the Prometheus project: naming, units, help, counter suffixes)."""
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not installed: .ci/run installs Debian's prometheus package",
            pytrace=False,
        )
    texts = {name: proc.get("/metrics")[1] for name, proc in stack.items()}
    texts["client"] = player_metrics
    for name, text in texts.items():
        result = subprocess.run(
            [exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and not result.stdout.strip(), (
            f"{name}: {result.stdout}{result.stderr}"
        )
