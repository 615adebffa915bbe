"""Commands refuse bad arguments and inputs with one line on stderr before creating anything
(#29): sim-record and eval with a bad task or embodiment, run with a bad task, embodiment file
or real-time factor, steer and align with an --out that is a file."""

from __future__ import annotations

import pytest

from ate_ros.cli import main


def _one_line_error(capsys, command: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"ate-ros {command}: error: "), err
    return err[0]


@pytest.mark.parametrize("extra, match", [
    (["--task", "reachx"], "unknown task 'reachx'"),
    (["--embodiment", "no_such_arm"], "no_such_arm"),
    (["--episodes", "0"], "--episodes must be >= 1"),
])
def test_sim_record_refuses_before_writing(tmp_path, capsys, extra, match):
    out = tmp_path / "bags"
    argv = ["sim-record", "--embodiment", "sim_arm6", "--task", "reach", "--out", str(out)]
    argv += extra
    assert main(argv) == 2
    assert match in _one_line_error(capsys, "sim-record")
    assert not out.exists()


def test_sim_record_refuses_an_embodiment_without_a_simulated_arm(tmp_path, capsys,
                                                                   small_embodiment):
    small_embodiment.to_yaml(tmp_path / "toy3.yaml")
    out = tmp_path / "bags"
    assert main(["sim-record", "--embodiment", str(tmp_path / "toy3.yaml"), "--task", "reach",
                 "--out", str(out), "--direct"]) == 2
    assert "has no simulated arm" in _one_line_error(capsys, "sim-record")
    assert not out.exists()


@pytest.mark.parametrize("extra, match", [
    (["--task", "reachx"], "unknown task"),
    (["--embodiment", "no_such_arm"], "no_such_arm"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--policy", "/no/such/policy"], "/no/such/policy"),
])
def test_eval_refuses_before_creating_out(tmp_path, capsys, extra, match):
    out = tmp_path / "eval"
    argv = ["eval", "--policy", "hold", "--embodiment", "sim_arm6", "--task", "reach", "--out",
            str(out)]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    assert match in _one_line_error(capsys, "eval")
    assert not out.exists()


@pytest.mark.parametrize("extra, match", [
    (["--task", "reachx"], "unknown task"),
    (["--embodiment", "/no/such.yaml"], "/no/such.yaml"),
    (["--real-time-factor", "-1"], "--real-time-factor: value must be in [0.01, 100.0]"),
])
def test_run_refuses_bad_sim_arguments_in_one_line(capsys, extra, match):
    assert main(["run", "--sim", "--policy", "expert", "--duration", "0.1", *extra]) == 2
    assert match in _one_line_error(capsys, "run")


@pytest.mark.parametrize("command", ["steer", "align"])
def test_out_naming_an_existing_file_is_refused(tmp_path, capsys, toy_align_data, command):
    out = tmp_path / "taken.json"
    out.write_text("{}")
    if command == "steer":
        argv = ["steer", "--policy", str(tmp_path / "pol"), "--guidance", "off", "--data",
                str(toy_align_data / "ada"), "--out", str(out)]
    else:
        argv = ["align", "--pretrain", str(toy_align_data / "pre"), "--embodiment-pre",
                str(toy_align_data / "arm3.yaml"), "--adapt", str(toy_align_data / "ada"),
                "--embodiment-ada", str(toy_align_data / "arm4.yaml"), "--out", str(out)]
    assert main(argv) == 2
    assert "is a file" in _one_line_error(capsys, command)
    assert out.read_text() == "{}"


@pytest.mark.parametrize("argv, match", [
    (["run", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["steer", "--policy", "p", "--data", "d", "--out", "o", "--batch-size", "0"],
     "argument --batch-size: value must be >= 1, got 0"),
    (["eval", "--task", "reach"], "the following arguments are required: --embodiment"),
])
def test_usage_errors_are_one_line_too(capsys, argv, match):
    """argparse's own errors (bad value, bound, unknown option) follow the commands' rule: one
    stderr line naming the command and the option, exit 2, no usage block."""
    assert main(argv) == 2
    line = _one_line_error(capsys, argv[0])
    assert match in line and line.endswith(f"(see ate-ros {argv[0]} --help)")
