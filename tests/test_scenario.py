"""Scenario files: the shipped ones validate, and every kind of mistake is named with its line.

Each error test starts from the shipped ``smoke`` scenario, breaks one thing
by editing its text, and checks that the message says what is wrong and
where (``file:line`` and the key path).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.scenarios import SCENARIO_DIR, ScenarioError, find, load, shipped
from experiments.scenarios.cli import validate_main
from experiments.scenarios.model import Charger, Migrate, SetCpu, SetLink
from experiments.scenarios.units import UnitError, parse_quantity

REPO = Path(__file__).resolve().parent.parent
SMOKE = (SCENARIO_DIR / "smoke.yaml").read_text()
SHIPPED = (
    "smoke",
    "offload-constrained-device",
    "battery-saver",
    "network-degrades",
    "policy-comparison",
)


def variant(tmp_path: Path, old: str, new: str, text: str = SMOKE) -> Path:
    """The smoke scenario with ``old`` (which must occur once) replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new))
    return path


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def problems(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load(path)
    return str(info.value)


# -- shipped scenarios -------------------------------------------------------------
def test_every_shipped_scenario_validates():
    names = {p.stem for p in shipped()}
    assert set(SHIPPED) <= names
    for path in shipped():
        scenario = load(path)
        assert scenario.name == path.stem
        assert scenario.description
        assert scenario.runs()


def test_shipped_scenarios_are_what_the_issue_asks_for():
    smoke = load(find("smoke"))
    assert smoke.total_seconds <= 15  # seconds, for tests
    for name in SHIPPED[1:]:
        s = load(find(name))
        assert 60 <= s.total_seconds <= 10 * 60, f"{name}: {s.total_seconds} s"  # a few minutes
    comparison = load(find("policy-comparison"))
    assert [v.name for v in comparison.scheduler.runs()] == [
        "static-local",
        "static-remote",
        "threshold",
        "score",
    ]
    assert comparison.repeats >= 3 and len(comparison.runs()) == 4 * comparison.repeats
    assert len({r.seed for r in comparison.runs()}) == comparison.repeats
    assert comparison.scheduler.runs()[1].config() == {
        "policy": "static:edge-1",
        "engine": {"min_dwell_s": 8, "settle_s": 2, "window_s": 3, "min_samples": 3},
    }
    offload = load(find("offload-constrained-device"))
    # CPU-starved after warm-up: squeezed to under half a core, fluctuating.
    squeeze = [a.share for a in offload.actions if isinstance(a, SetCpu)]
    assert squeeze and max(squeeze) <= 0.45 and len(set(squeeze)) >= 3
    battery = load(find("battery-saver"))
    assert battery.scheduler.policy == "battery"
    assert {a.plugged for a in battery.actions if isinstance(a, Charger)} == {True, False}
    degrade = load(find("network-degrades"))
    assert degrade.clients[0].mode == "remote" and degrade.clients[0].node == "edge-1"
    before = degrade.link("device", "edge")
    after = {frozenset((x.a, x.b)): x for x in degrade.links_at(100.0)}[before.key]
    assert before.latency_s == pytest.approx(0.0075) and after.latency_s == pytest.approx(0.06)
    assert after.bandwidth_bps == pytest.approx(2e6) and after.bursty is not None
    assert 0.03 < after.bursty.mean_loss < 0.05


def test_the_model_is_in_base_units():
    s = load(find("smoke"))
    assert s.duration_s == 6.0 and s.warmup_s == 2.0
    link = s.link("edge", "device")
    assert link is not None
    assert (link.latency_s, link.jitter_s, link.bandwidth_bps) == pytest.approx((0.005, 0.001, 5e7))
    assert s.bots[0].join_rate == 10.0
    assert s.clients[0].battery is not None and s.clients[0].battery.capacity_j == 50 * 3600
    (action,) = s.actions
    assert isinstance(action, SetLink) and action.at_s == 3.0
    assert action.changes == {"latency_s": 0.03, "loss": pytest.approx(0.01)}
    json.dumps(s.to_dict())  # the runner and reports can store it


# -- units ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("30s", "duration", 30.0),
        ("500ms", "duration", 0.5),
        ("2min", "duration", 120.0),
        ("10mbit", "rate", 1e7),
        ("7.21mbit", "rate", 7.21e6),
        ("100kbit/s", "rate", 1e5),
        ("1%", "percent", 0.01),
        ("0.5%", "percent", 0.005),
        ("15Wh", "energy", 54000.0),
        ("800mW", "power", 0.8),
        ("5/s", "frequency", 5.0),
        ("0.3J/MB", "energy_per_data", 0.3),
    ],
)
def test_units_convert_to_base_units(text, kind, value):
    assert parse_quantity(text, kind) == pytest.approx(value)


def test_units_refuse_bare_numbers_wrong_kinds_and_ambiguity():
    with pytest.raises(UnitError, match=r"has no unit.*e\.g\. 500ms"):
        parse_quantity(20, "duration")
    with pytest.raises(UnitError, match="mbit is a unit of rate"):
        parse_quantity("20mbit", "duration")
    with pytest.raises(UnitError, match="tc reads mbps as megabytes"):
        parse_quantity("10mbps", "rate")
    with pytest.raises(UnitError, match="must not be negative"):
        parse_quantity("-3ms", "duration")
    with pytest.raises(UnitError, match="unknown unit 'parsecs'"):
        parse_quantity("3parsecs", "duration")


# -- one test per kind of error ------------------------------------------------------
def test_unknown_key_with_did_you_mean(tmp_path):
    path = variant(tmp_path, "    latency: 5ms\n", "    latncy: 5ms\n")
    msg = problems(path)
    assert f"{path}:{line_of(path, 'latncy')}: links[0].latncy: unknown key" in msg
    assert "did you mean 'latency'?" in msg


def test_unknown_top_level_and_node_keys(tmp_path):
    path = variant(tmp_path, "warmup: 2s\n", "warmpu: 2s\n")
    msg = problems(path)
    assert f"{path}:{line_of(path, 'warmpu')}: warmpu: unknown key (did you mean 'warmup'?)" in msg
    path = variant(tmp_path, "      capacity: 2\n", "      capacty: 2\n")
    assert "nodes.render[0].capacty: unknown key (did you mean 'capacity'?)" in problems(path)


def test_value_without_unit(tmp_path):
    path = variant(tmp_path, "    latency: 5ms\n", "    latency: 5\n")
    msg = problems(path)
    assert f"{path}:{line_of(path, 'latency: 5')}: links[0].latency: 5 has no unit" in msg
    assert "a duration needs one" in msg


def test_value_with_the_wrong_kind_of_unit(tmp_path):
    path = variant(
        tmp_path,
        "    bandwidth: 50mbit\n  - between: [device, cloud]",
        "    bandwidth: 50ms\n  - between: [device, cloud]",
    )
    msg = problems(path)
    assert f"{path}:{line_of(path, 'bandwidth: 50ms')}: links[0].bandwidth:" in msg
    assert "ms is a unit of duration, not of rate (bandwidth)" in msg


def test_negative_and_out_of_range_values(tmp_path):
    path = variant(tmp_path, "    jitter: 1ms\n", "    jitter: -1ms\n")
    assert "links[0].jitter: '-1ms' must not be negative" in problems(path)
    path = variant(tmp_path, "latency: 30ms, loss: 1%", "latency: 30ms, loss: 150%")
    assert "actions[0].set_link.loss: '150%' is more than the maximum (100%)" in problems(path)
    path = variant(tmp_path, "      count: 2\n", "      count: -2\n")
    assert "nodes.bots[0].count: -2 must be at least 0" in problems(path)


def test_client_on_an_undefined_render_node(tmp_path):
    path = variant(tmp_path, "      mode: local\n", "      mode: remote\n      node: edge-2\n")
    msg = problems(path)
    assert f"{path}:{line_of(path, 'node: edge-2')}: nodes.clients[0].node:" in msg
    assert "no render node named 'edge-2' (did you mean 'edge-1'?)" in msg
    path = variant(tmp_path, "      mode: local\n", "      mode: remote\n")
    assert "mode: remote needs node:" in problems(path)


def test_link_between_undefined_locations(tmp_path):
    path = variant(tmp_path, "between: [device, cloud]", "between: [device, clod]")
    msg = problems(path)
    assert f"{path}:{line_of(path, 'clod')}: links[1].between: undefined location 'clod'" in msg
    assert "did you mean 'cloud'?" in msg
    # Nothing at the cloud once the sim moves to the edge: a link there joins nothing.
    path = variant(
        tmp_path, "    location: cloud\n    generator", "    location: edge\n    generator"
    )
    assert "links[1].between: no node is at location 'cloud'" in problems(path)
    path = variant(tmp_path, "between: [device, cloud]", "between: [edge, edge]")
    assert "a link joins two different locations" in problems(path)


def test_static_policy_naming_no_node(tmp_path):
    path = variant(
        tmp_path,
        "    policy: threshold\n    params: {fps_min: 20, k_leave: 2, k_return: 3}\n",
        "    policy: static:edge-9\n",
    )
    msg = problems(path)
    assert f"{path}:{line_of(path, 'static:edge-9')}: nodes.scheduler.policy:" in msg
    assert "static:edge-9 names no render node (did you mean 'edge-1'?)" in msg


def test_bad_policy_parameters_use_the_schedulers_checks(tmp_path):
    path = variant(tmp_path, "{fps_min: 20, k_leave: 2", "{fps_mn: 20, k_leave: 2")
    assert "nodes.scheduler.params: threshold: unknown parameter(s) fps_mn" in problems(path)
    path = variant(tmp_path, "    policy: threshold\n", "    policy: thresold\n")
    assert "unknown policy 'thresold'" in problems(path)
    path = variant(tmp_path, "engine: {min_dwell_s: 2,", "engine: {min_dwell_s: -2,")
    assert "nodes.scheduler.engine: engine.min_dwell_s must be >= 0" in problems(path)


def test_actions_beyond_the_duration(tmp_path):
    path = variant(tmp_path, "  - at: 3s\n", "  - at: 9s\n")
    msg = problems(path)
    assert (
        f"{path}:{line_of(path, 'at: 9s')}: actions[0].at: '9s' is after the end of the run" in msg
    )
    assert "duration 6 s" in msg


def test_actions_on_things_that_do_not_exist(tmp_path):
    actions = (
        "actions:\n  - at: 3s\n    set_link: {between: [device, edge], latency: 30ms, loss: 1%}\n"
    )

    def with_action(text: str) -> str:
        return problems(variant(tmp_path, actions, f"actions:\n{text}"))

    assert "actions[0].set_cpu.client: no client named 'alcie' (did you mean 'alice'?)" in (
        with_action("  - at: 1s\n    set_cpu: {client: alcie, share: 20%}\n")
    )
    assert "actions[0].migrate.to: no render node named 'edge-2'" in (
        with_action("  - at: 1s\n    migrate: {client: alice, to: edge-2}\n")
    )
    assert "actions[0].kill.node: no node named 'edg-1' (did you mean 'edge-1'?)" in (
        with_action("  - at: 1s\n    kill: edg-1\n")
    )
    assert "no link between edge and cloud is defined" in (
        with_action("  - at: 1s\n    set_link: {between: [edge, cloud], latency: 5ms}\n")
    )
    assert "set_link changes nothing" in (
        with_action("  - at: 1s\n    set_link: {between: [device, edge]}\n")
    )
    assert "an action has exactly one of" in (
        with_action("  - at: 1s\n    kill: edge-1\n    unplug: alice\n")
    )
    no_battery = variant(
        tmp_path, "      max_fps: 30\n", "      max_fps: 30\n      battery: none\n"
    )
    text = no_battery.read_text().replace(actions, "actions:\n  - at: 1s\n    unplug: alice\n")
    no_battery.write_text(text)
    assert "actions[0].unplug.client: client 'alice' has no battery" in problems(no_battery)


def test_follow_target_must_exist(tmp_path):
    path = variant(
        tmp_path,
        "      join_rate: 10/s\n",
        "      join_rate: 10/s\n      options: {target: alcie}\n",
    )
    msg = problems(path)
    assert f"{path}:{line_of(path, 'alcie')}: nodes.bots[0].options.target:" in msg
    assert "no client or bot named 'alcie' (did you mean 'alice'?)" in msg


def test_bot_options_are_checked(tmp_path):
    path = variant(
        tmp_path,
        "      join_rate: 10/s\n",
        "      join_rate: 10\n      options: {box: 8, edit_intervl: 2s, tnt_interval: 3}\n",
    )
    msg = problems(path)
    assert "nodes.bots[0].join_rate: 10 has no unit; a frequency needs one" in msg
    assert "options.edit_intervl: unknown key (did you mean 'edit_interval'?)" in msg
    assert "options.tnt_interval: 3 has no unit" in msg
    path = variant(tmp_path, "      behaviour: walk\n", "      behaviour: walk_modify\n")
    assert "'walk_modify' is not one of" in problems(path)
    assert "(did you mean 'walk-modify'?)" in problems(path)


def test_names_must_be_unique_and_valid(tmp_path):
    path = variant(tmp_path, "    - name: smokebot\n", "    - name: alice\n")
    assert "the name 'alice' is used by a client and a bot group" in problems(path)
    path = variant(tmp_path, "    - name: edge-1\n", "    - name: device\n")
    assert "may not be called 'device'" in problems(path)


def test_duplicate_keys_and_bad_yaml_name_their_line(tmp_path):
    path = variant(tmp_path, "repeats: 1\n", "repeats: 1\nrepeats: 2\n")
    assert f"{path}:{line_of(path, 'repeats: 2')}: duplicate key 'repeats' (first on line" in (
        problems(path)
    )
    path = variant(tmp_path, "seeds: [1]\n", "seeds: [1\n")
    assert "not valid YAML" in problems(path)


def test_seeds_and_repeats(tmp_path):
    path = variant(tmp_path, "repeats: 1\n", "repeats: 3\n")
    assert "seeds: 1 seed(s) for 3 repeats" in problems(path)
    path = variant(tmp_path, "repeats: 1\nseeds: [1]\n", "repeats: 3\nseeds: 40\n")
    assert [r.seed for r in load(path).runs()] == [40, 41, 42]


def test_every_problem_is_reported_at_once(tmp_path):
    text = SMOKE.replace("latency: 5ms", "latency: 5").replace("      count: 2", "      cont: 2")
    path = tmp_path / "many.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    wheres = {p.where for p in info.value.problems}
    assert {"links[0].latency", "nodes.bots[0].cont"} <= wheres


def test_a_sweep_with_few_repeats_is_a_warning(tmp_path):
    text = (SCENARIO_DIR / "policy-comparison.yaml").read_text()
    path = variant(tmp_path, "repeats: 3\n", "repeats: 2\n", text)
    warnings = []
    scenario = load(path, on_warning=warnings.append)
    assert len(scenario.runs()) == 8
    assert any("confidence intervals need at least 3" in str(w) for w in warnings)


# -- the entry point ---------------------------------------------------------------
def test_validate_main(tmp_path, capsys):
    assert validate_main(["smoke"]) == 0
    out = capsys.readouterr().out
    assert "ok: smoke" in out and "1 = 1 variant(s) x 1 repeat(s)" in out
    bad = variant(tmp_path, "    latency: 5ms\n", "    latency: 5\n")
    assert validate_main([str(bad), "smoke"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "has no unit" in err and "1 of 2 scenario file(s) invalid" in err
    assert validate_main(["--json", "smoke"]) == 0
    model = json.loads(capsys.readouterr().out)
    assert model["name"] == "smoke" and model["actions"][0]["kind"] == "set_link"
    assert validate_main([]) == 0  # every shipped file


def test_validate_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.scenarios.cli", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_loaded_actions_are_typed():
    s = load(find("battery-saver"))
    kinds = [a.kind for a in s.actions]
    assert kinds == ["set_battery", "set_battery", "plug", "plug"]  # unplug is plug(False)
    assert [a.plugged for a in s.actions if isinstance(a, Charger)] == [True, False]
    assert not any(isinstance(a, Migrate) for a in s.actions)


def test_the_documented_examples_validate(tmp_path):
    doc = (REPO / "docs" / "scenarios.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    assert len(blocks) == 2  # the full format, and smoke
    for i, block in enumerate(blocks):
        path = tmp_path / f"doc{i}.yaml"
        path.write_text(block)
        load(path)
