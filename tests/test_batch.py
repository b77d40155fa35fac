"""`sds-audio batch`: the library index, rerun / retry, worker death, Ray tasks, bad input; on a tiny prior.

One library is built once per module through three commands (with injected failures, without
them, and again with nothing left to do); the tests read what each command left. The Ray
test starts a local cluster of 2 CPUs and skips where Ray is not installed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sds_audio.batch import LIBRARY_CSV, LIBRARY_FILE, build_library, parse_seeds, read_prompts, run_name
from sds_audio.cli import main
from sds_audio.errors import SDSAudioError
from sds_audio.jobs import JobOptions
from sds_audio.presets import load_preset

from tiny_embedded import write_prior_dir

PROMPTS = ["kick drum, bass", "a soft bell"]
FAST = dict(steps=2, restarts=2, duration_s=0.3)


def _options(prior_dir: str) -> JobOptions:
    return JobOptions(prior=prior_dir, **FAST)


def _rows(lib: Path) -> dict[tuple[str, int], dict]:
    return {(r["prompt"], r["seed"]): r for r in json.loads((lib / LIBRARY_FILE).read_text())["runs"]}


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    return str(write_prior_dir(tmp_path_factory.mktemp("tiny_prior")))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(f"# drums\n{PROMPTS[0]}\n\n  {PROMPTS[1]}  \n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory, prior_dir, prompts_file):
    """The library after: (1) a command whose runs of PROMPTS[0] fail once (an exception) and whose
    worker dies on every run of PROMPTS[1]; (2) the same command without failures; (3) once more."""
    lib = tmp_path_factory.mktemp("lib") / "library"
    faults = {PROMPTS[0]: {"mode": "raise", "attempts": 1}, PROMPTS[1]: {"mode": "exit", "attempts": 99}}
    first = build_library(prompts_file, lib, "fm", "0,1", _options(prior_dir), workers=2, retries=1,
                          progress=False, faults=faults)
    after_first = _rows(lib)
    dirs_after_first = sorted(p.name for p in (lib / "runs").iterdir())
    second = build_library(prompts_file, lib, "fm", [0, 1], _options(prior_dir), workers=2, retries=1,
                           progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (lib / "runs").iterdir()}
    third = build_library(prompts_file, lib, "fm", "0-1", _options(prior_dir), workers=2, progress=False)
    return dict(lib=lib, first=first, after_first=after_first, dirs_after_first=dirs_after_first, second=second,
                third=third, mtimes=mtimes)


def test_prompts_file_and_seeds_parse(tmp_path, prompts_file):
    assert read_prompts(prompts_file) == PROMPTS
    assert parse_seeds("0,1") == [0, 1] and parse_seeds("3-5, 9") == [3, 4, 5, 9]
    assert run_name("Kick drum, BASS!", 7).startswith("kick-drum-bass-") and run_name("Kick", 7).endswith("-seed7")
    assert run_name("kick drum", 0) != run_name("kick-drum", 0)        # same slug, different prompts


def test_failures_are_recorded_and_retried(library):
    """Command 1: an exception is retried and the run finishes; a dying worker fails its run alone."""
    first, rows = library["first"], library["after_first"]
    assert (first.n_run, first.n_failed, first.n_skipped) == (2, 2, 0)
    for seed in (0, 1):
        done, died = rows[(PROMPTS[0], seed)], rows[(PROMPTS[1], seed)]
        assert (done["status"], done["attempts"], done["error"]) == ("done", 2, "")
        assert (died["status"], died["attempts"]) == ("failed", 2)
        assert "worker process died (exit code 3)" in died["error"]
    assert library["dirs_after_first"] == sorted(run_name(PROMPTS[0], seed) for seed in (0, 1))


def test_rerun_retries_failed_runs_and_skips_finished_ones(library):
    second, third = library["second"], library["third"]
    assert (second.n_run, second.n_failed, second.n_skipped) == (2, 0, 2)
    rows = _rows(library["lib"])
    assert [rows[(PROMPTS[1], s)]["attempts"] for s in (0, 1)] == [3, 3]          # 2 failed + 1 now
    assert [rows[(PROMPTS[0], s)]["attempts"] for s in (0, 1)] == [2, 2]          # not run again
    assert (third.n_run, third.n_failed, third.n_skipped) == (0, 0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in (library["lib"] / "runs").iterdir()} == library["mtimes"]


def test_index_is_complete(library):
    lib = library["lib"]
    index = json.loads((lib / LIBRARY_FILE).read_text())
    assert index["format"] == "sds-audio-library" and index["synth"] == "fm"
    assert index["counts"] == {"done": 4, "failed": 0, "pending": 0}
    assert index["options"]["steps"] == 2 and "seed" not in index["options"]
    assert sorted((r["prompt"], r["seed"]) for r in index["runs"]) == sorted((p, s) for p in PROMPTS for s in (0, 1))
    with open(lib / LIBRARY_CSV, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["prompt", "seed", "synth", "status", "judge_initial", "judge_final", "wall_s",
                              "attempts", "path", "bank", "error"]
    assert len(table) == 4
    for entry, line in zip(index["runs"], table):
        run = lib / entry["path"]
        assert sorted(p.name for p in run.iterdir()) == ["initial.wav", "preset.json", "report.png", "run.json",
                                                         "sound.wav"]
        record = json.loads((run / "run.json").read_text())
        assert (record["status"], record["prompt"], record["synth"]) == ("done", entry["prompt"], "fm")
        assert record["options"]["seed"] == entry["seed"] and record["batch"]["runner"] == "local"
        best = record["best_restart"]
        if record["judge_final"]:                          # the shipped judge scored the run
            assert entry["judge_final"] == record["judge_final"][best] and -1 <= entry["judge_final"] <= 1
            assert entry["judge_initial"] == record["judge_initial"][best]
            assert float(line["judge_final"]) == pytest.approx(entry["judge_final"])
        else:
            assert entry["judge_final"] is None and line["judge_final"] == ""
        assert entry["wall_s"] == record["batch"]["wall_s"] > 0 and record["batch"]["cpu_s"] > 0
        assert (line["prompt"], int(line["seed"]), line["status"], line["path"], line["bank"]) == \
            (entry["prompt"], entry["seed"], "done", entry["path"], "")            # fm, no fitted voices
        preset = load_preset(run / "preset.json")
        assert preset.synth.synth_type == "fm" and preset.provenance["seed"] == entry["seed"]
        assert sf.info(str(run / "sound.wav")).frames == round(0.3 * 22050)
    # different seeds of one prompt are different runs
    a, b = (sf.read(str(lib / _rows(lib)[(PROMPTS[0], s)]["path"] / "sound.wav"))[0] for s in (0, 1))
    assert np.abs(a - b).max() > 1e-3
    assert not [p for p in (lib / "runs").iterdir() if p.name.startswith(".")]    # no temp directories left


def test_cli_rerun_reports_and_refuses_other_options(library, prompts_file, prior_dir, capsys):
    lib = library["lib"]
    base = ["batch", str(prompts_file), "-o", str(lib), "--seeds", "0,1", "--prior", prior_dir, "--steps", "2",
            "--restarts", "2", "--duration-s", "0.3", "--quiet"]
    assert main(base) == 0
    assert "4 of 4 runs done (0 now, 4 already finished), 0 failed" in capsys.readouterr().out
    before = (lib / LIBRARY_FILE).read_bytes()
    assert main([*base[:-1], "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "steps=2" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert main([*base, "--synth", "impact"]) == 2
    assert "fm library" in capsys.readouterr().err
    assert (lib / LIBRARY_FILE).read_bytes() == before


def test_a_lost_index_is_rebuilt_from_the_run_directories(library, tmp_path, prompts_file, prior_dir):
    import shutil

    lib = tmp_path / "copy"
    shutil.copytree(library["lib"], lib)
    before = _rows(lib)
    (lib / LIBRARY_FILE).unlink()
    (lib / LIBRARY_CSV).unlink()
    summary = build_library(prompts_file, lib, "fm", "0,1", _options(prior_dir), progress=False)
    assert (summary.n_run, summary.n_skipped) == (0, 4)
    after = _rows(lib)
    for key, row in before.items():
        assert (after[key]["status"], after[key]["path"], after[key]["judge_final"], after[key]["wall_s"]) == \
            ("done", row["path"], row["judge_final"], row["wall_s"])


def test_a_user_error_in_a_run_stops_the_command_without_retries(tmp_path, prompts_file, prior_dir):
    lib = tmp_path / "lib"
    faults = {p: {"mode": "user", "attempts": 99} for p in PROMPTS}
    with pytest.raises(SDSAudioError, match="injected user error"):
        build_library(prompts_file, lib, "fm", "0", _options(prior_dir), workers=1, progress=False, faults=faults)
    rows = _rows(lib)
    assert sorted(r["status"] for r in rows.values()) == ["failed", "pending"]
    assert [r["attempts"] for r in rows.values() if r["status"] == "failed"] == [1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("content, extra, message", [
    ("", [], "holds no prompt"),
    ("# only a comment\n\n", [], "holds no prompt"),
    ("bell\nkick\nbell\n", [], "lines 1 and 3"),
    (b"\xff\xfe bell", [], "not UTF-8"),
    ("bell\n", ["--seeds", "1,x"], "not a seed"),
    ("bell\n", ["--seeds", "-1"], "not a seed"),
    ("bell\n", ["--seeds", "5-2"], "must run upwards"),
    ("bell\n", ["--seeds", "0,0"], "given twice"),
    ("bell\n", ["--workers", "0"], "--workers"),
    ("bell\n", ["--retries", "-1"], "--retries"),
    ("bell\n", ["--synth", "piano"], "unknown synth type"),
    ("bell\n", ["--steps", "0"], "--steps"),
    ("bell\n", ["--prior", "no-such-prior"], "unknown prior"),
    ("bell\n", ["--ray", "127.0.0.1:{port}"], "{ray}"),
    ("bell\n", ["--ray", "no-port"], "{ray}"),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, capsys, content, extra, message):
    try:
        import ray  # noqa: F401
    except ImportError:
        ray_message = "sds-audio[ray]"
    else:
        ray_message = "Ray cluster"
    path = tmp_path / "prompts.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = [a.format(port=_closed_port()) for a in extra]
    out = tmp_path / "lib"
    assert main(["batch", str(path), "-o", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(ray=ray_message) in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_directory_that_is_not_a_library_is_refused(tmp_path, prompts_file, capsys):
    out = tmp_path / "lib"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert main(["batch", str(prompts_file), "-o", str(out), "--quiet"]) == 2
    assert "holds no library.json" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sds-audio[ray]')")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")     # offline, local only
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
    for signum, handler in handlers.items():      # ray.init replaces SIGTERM's handler and leaves it there
        signal.signal(signum, handler)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ray_tasks_give_the_same_runs_as_local_workers(ray_cluster, library, tmp_path, prior_dir):
    """One run as a Ray task, whose first worker dies: retried, and identical to the local pool's run."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[1] + "\n", encoding="utf-8")
    lib = tmp_path / "ray_lib"
    summary = build_library(prompts, lib, "fm", "1", _options(prior_dir), ray_address="auto", retries=1,
                            progress=False, faults={PROMPTS[1]: {"mode": "exit", "attempts": 1}})
    assert (summary.n_run, summary.n_failed) == (1, 0)
    row, local_row = _rows(lib)[(PROMPTS[1], 1)], _rows(library["lib"])[(PROMPTS[1], 1)]
    assert (row["status"], row["attempts"], row["path"]) == ("done", 2, local_row["path"])
    ray_run, local_run = lib / row["path"], library["lib"] / local_row["path"]
    assert json.loads((ray_run / "run.json").read_text())["batch"]["runner"] == "ray"
    assert (ray_run / "sound.wav").read_bytes() == (local_run / "sound.wav").read_bytes()
    a, b = (json.loads((r / "preset.json").read_text()) for r in (ray_run, local_run))
    assert a["params"] == b["params"] and row["judge_final"] == local_row["judge_final"]


def test_banks_hold_the_runs_voices_in_index_order(tmp_path):
    from sds_audio.batch_library import Row, write_banks
    from sds_audio.exports.syx import BANK_VOICES, DX7Voice, read_syx, voice_name, write_vced

    rows = []
    for k in range(BANK_VOICES + 3):                    # two banks: 32 voices + 3
        row = Row(f"sound {k}", 0, "dx7", status="done" if k != 5 else "failed", path=f"runs/r{k}")
        (tmp_path / row.path).mkdir(parents=True)
        voice = DX7Voice.init_voice()
        voice.name = voice_name(f"voice {k}")
        voice.globals["algorithm"] = k % 32
        write_vced(tmp_path / row.path / "voice.syx", voice)
        rows.append(row)
    rows.append(Row("no voice", 0, "fm", status="done", path="runs/none"))   # an fm run without a fitted voice
    banks = write_banks(tmp_path, rows)
    assert [p.name for p in banks] == ["bank_01.syx", "bank_02.syx"]
    voices = read_syx(banks[0]) + read_syx(banks[1])
    kept = [k for k in range(BANK_VOICES + 3) if k != 5]
    assert [v.name for v in voices[:len(kept)]] == [voice_name(f"voice {k}") for k in kept]
    assert [v.globals["algorithm"] for v in voices[:len(kept)]] == [k % 32 for k in kept]
    assert voices[len(kept)].name.strip() == DX7Voice.init_voice().name.strip()          # padding
    assert rows[0].bank == "bank_01.syx:1" and rows[6].bank == "bank_01.syx:6" and rows[5].bank == ""
    assert rows[33].bank == "bank_02.syx:1" and rows[-1].bank == ""


def test_a_worker_that_cannot_start_stops_the_pool_with_advice():
    """A worker process that dies before it is up (e.g. a script without a __main__ guard) fails every run:
    the pool says so instead of retrying."""
    from sds_audio.batch_pool import LocalPool, _Worker

    class DeadOnArrival(LocalPool):
        def _start_worker(self):
            parent, child = self._ctx.Pipe()
            process = self._ctx.Process(target=os._exit, args=(5,), daemon=True)
            process.start()
            child.close()
            return _Worker(process, parent)

    pool = DeadOnArrival(1)
    with pytest.raises(SDSAudioError, match="exited with code 5 before it started.*__main__"):
        pool.submit({"prompt": "bell"})       # the pipe may break here already, or the death shows in wait()
        pool.wait()
    pool.close()
