"""plot-chunks and bag2dataset over a folder of bad and foreign bags, run as a user runs them.

The folder holds real bags written by rosbags: one beside a service-event topic whose type
definition rosbags cannot parse, one without metadata.yaml (both convert), an empty file, a
truncated MCAP, an MCAP with 4 KB zeroed inside a chunk (a CRC mismatch), and one whose topics
are not CDR-serialised (all four rejected). Each command runs in its own process, so a traceback
anywhere (uncaught or logged) is seen; exit codes are the documented ones, rejected bags get
the same one-line error from both commands, and nothing partial is left behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from support.fixtures_bags import T0_NS, BagPlan, toy_embodiment, write_bag

from ate_ros.core.data.bag_writer import mcap_chunk_records

SERVICE_TOPIC = "/add_two_ints/_service_event"
SERVICE_TYPE = "example_interfaces/srv/AddTwoInts_Event"
SERVICE_DEF = """service_msgs/ServiceEventInfo info
AddTwoInts_Request[<=1] request
AddTwoInts_Response[<=1] response
================================================================================
MSG: service_msgs/ServiceEventInfo
uint8 event_type
builtin_interfaces/Time stamp
char[16] client_gid
int64 sequence_number
================================================================================
MSG: example_interfaces/srv/AddTwoInts
int64 a
int64 b
---
int64 sum
"""
"""A service event's definition as recorded with the .srv file inline: rosbags cannot parse it."""

CONVERTS = ("service_events", "no_metadata")
REJECTED = {  # bag -> what its error says
    "empty.mcap": "cannot open bag",
    "truncated": "truncated or corrupt",
    "zero_filled": "CRC mismatch",
    "wrong_format": "not supported",
}


def _copy(src: Path, dst: Path, metadata: dict[str, str], service_events: bool = False,
          serialization_format: str = "cdr") -> Path:
    """Re-write an MCAP bag message by message, adding a service-event topic or declaring
    another serialization format."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    with Reader(src) as r, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data,
                                        rihs01=c.digest,
                                        serialization_format=serialization_format)
                 for c in r.connections}
        events = (w.add_connection(SERVICE_TOPIC, SERVICE_TYPE, msgdef=SERVICE_DEF,
                                   rihs01="RIHS01_" + "0" * 64) if service_events else None)
        for conn, t, raw in r.messages():
            w.write(conns[conn.id], t, raw)
            if events is not None and conn.topic == "/joint_states":
                w.write(events, t, b"\x00\x01\x00\x00" + bytes(60))
        for key, value in metadata.items():
            w.set_custom_data(key, value)
    return dst


def _zero_fill(bag: Path, n: int = 4096) -> None:
    """Zero ``n`` bytes in the middle of the bag's last MCAP chunk."""
    f = next(bag.glob("*.mcap"))
    start, length = mcap_chunk_records(f)[-1]
    data = bytearray(f.read_bytes())
    mid = start + length // 2
    data[mid - n // 2:mid + n // 2] = bytes(n)
    f.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, Path]:
    """(folder of bags, embodiment YAML)."""
    tmp = tmp_path_factory.mktemp("bad_bags")
    emb = tmp / "toy3.yaml"
    toy_embodiment().to_yaml(emb)
    root = tmp / "bags"
    root.mkdir()
    meta = {"embodiment": str(emb), "task": "stack"}
    plain = write_bag(tmp / "plain", "mcap", BagPlan(duration_s=2.0))
    _copy(plain, root / "service_events", meta, service_events=True)
    write_bag(root / "no_metadata", "mcap", BagPlan(duration_s=2.0))
    (root / "no_metadata" / "metadata.yaml").unlink()
    (root / "empty.mcap").write_bytes(b"")
    trunc = write_bag(root / "truncated", "mcap", BagPlan(duration_s=2.0))
    f = next(trunc.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    # Large frames: several chunks, so the bag fails mid-read, after the first chunk.
    zeroed = write_bag(root / "zero_filled", "mcap", BagPlan(duration_s=2.0,
                                                             img_size=(120, 160)))
    assert len(mcap_chunk_records(next(zeroed.glob("*.mcap")))) >= 2
    _zero_fill(zeroed)
    _copy(plain, root / "wrong_format", meta, serialization_format="ros1")
    return root, emb


def _cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ate_ros.cli", *args], capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return proc


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def converted(bad_folder) -> tuple[Path, dict]:
    """bag2dataset over the whole folder: (dataset folder, manifest)."""
    root, emb = bad_folder
    out = root.parent / "dataset"
    proc = _cli("bag2dataset", str(root), "--embodiment", str(emb), "--out", str(out),
                "--split", "0")
    assert proc.returncode == 1, proc.stderr  # some bags failed, the others are written
    return out, json.loads((out / "manifest.json").read_text())


def test_bag2dataset_converts_the_foreign_bags_and_rejects_the_bad(converted):
    out, manifest = converted
    by_name = {b["name"]: b for b in manifest["bags"]}
    assert sorted(by_name) == sorted(["service_events", "no_metadata", "empty", "truncated",
                                      "zero_filled", "wrong_format"])
    for name in CONVERTS:
        assert by_name[name]["status"] == "ok", by_name[name]["error"]
    assert any(SERVICE_TYPE in w for w in by_name["service_events"]["warnings"])
    for name, says in REJECTED.items():
        b = by_name[Path(name).stem]
        assert b["status"] == "failed" and says in b["error"], (name, b["error"])
        assert b["episodes"] == []
    # Only the converted bags' episodes; no staging folder, no file of a failed bag.
    assert _files(out) == ["embodiment.yaml", "manifest.json", "train/no_metadata.hdf5",
                           "train/service_events.hdf5"]
    assert not list(out.parent.glob(".dataset.*"))


def test_manifest_records_are_complete_for_every_bag(converted):
    """Every topic record has read/used/dropped and reconciles, also in a bag that failed
    mid-read: what it read before the CRC mismatch is dropped as bag_failed."""
    _, manifest = converted
    for b in manifest["bags"]:
        for topic, e in b["topics"].items():
            assert e["read"] == e["used"] + sum(e["dropped"].values()), (b["name"], topic, e)
            if b["status"] == "failed":
                assert e["used"] == 0
    zeroed = next(b for b in manifest["bags"] if b["name"] == "zero_filled")
    js = zeroed["topics"]["/joint_states"]
    assert 0 < js["read"] < js["count"] and js["dropped"] == {"bag_failed": js["read"]}
    events = next(b for b in manifest["bags"] if b["name"] == "service_events")
    assert events["topics"][SERVICE_TOPIC]["role"] == "ignored"
    assert events["topics"][SERVICE_TOPIC]["read"] == 0


def test_bag2dataset_exit_codes_and_no_partial_output(bad_folder):
    root, emb = bad_folder
    base = ["bag2dataset", "--embodiment", str(emb)]
    keep = root.parent / "kept"
    assert _cli(*base, str(root), "--out", str(keep), "--keep-going").returncode == 0
    rejected = [str(root / name) for name in REJECTED]
    none = root.parent / "none"
    proc = _cli(*base, *rejected, "--out", str(none))
    assert proc.returncode == 1
    assert _errors(proc) == ["error: no bag converted; nothing written"]
    assert sum(line.startswith("FAILED ") for line in proc.stderr.splitlines()) == len(REJECTED)
    assert not none.exists() and not list(root.parent.glob(".none.*"))
    notes = root.parent / "notes.txt"
    notes.write_text("not a bag")
    proc = _cli(*base, str(notes), "--out", str(none))
    assert proc.returncode == 2 and len(_errors(proc)) == 1 and not none.exists()


def test_plot_chunks_gives_bag2dataset_error_and_exit_codes(bad_folder, converted):
    root, emb = bad_folder
    _, manifest = converted
    error_of = {b["name"]: f"{b['path']}: {b['error']}" for b in manifest["bags"]}
    pngs = root.parent / "png"
    for name in REJECTED:
        png = pngs / f"{name}.png"
        proc = _cli("plot-chunks", str(root / name), "--embodiment", str(emb), "-o", str(png))
        assert proc.returncode == 1, (name, proc.stderr)
        assert _errors(proc) == [f"error: {error_of[Path(name).stem]}"], name
        assert not pngs.exists() or not list(pngs.iterdir())
    # Foreign bags plot; the service-event bag names its embodiment in its metadata.
    proc = _cli("plot-chunks", str(root / "service_events"), "-o", str(pngs / "events.png"))
    assert proc.returncode == 0, proc.stderr
    assert f"{SERVICE_TOPIC}: no definition for {SERVICE_TYPE}; skipped" in proc.stderr
    proc = _cli("plot-chunks", str(root / "no_metadata"), "--embodiment", str(emb), "-o",
                str(pngs / "no_metadata.png"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in pngs.iterdir()) == ["events.png", "no_metadata.png"]


def test_plot_chunks_usage_errors_and_nothing_to_draw(bad_folder, tmp_path):
    """Exit 2 for arguments the source cannot satisfy, 1 when no chunk is left after the hold
    chunks are skipped (an IndexError before)."""
    from ate_ros.core.data.bag_writer import BagRecorder

    root, emb = bad_folder
    png = tmp_path / "x.png"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a bag")
    for args in (["plot-chunks", str(tmp_path / "missing")],
                 ["plot-chunks", str(notes)],
                 ["plot-chunks", str(root / "no_metadata")],  # no embodiment anywhere
                 ["plot-chunks", str(root / "service_events"), "--topic", "/nope"],
                 ["plot-chunks", str(root)]):  # a folder of several bags
        proc = _cli(*args, "-o", str(png))
        assert proc.returncode == 2 and len(_errors(proc)) == 1, (args, proc.stderr)
    holds = tmp_path / "holds"
    with BagRecorder(holds) as rec:
        for k in range(3):
            t = T0_NS + k * 100_000_000
            rec.write_joint_state(t, ["j0", "j1", "j2"], [0.0, 0.1, 0.2])
            rec.write_action_chunk(t, ["j0", "j1", "j2"], [[0.0, 0.1, 0.2]], dt=0.1,
                                   embodiment="toy3", model_id="hold")
    proc = _cli("plot-chunks", str(holds), "--embodiment", str(emb), "-o", str(png))
    assert proc.returncode == 1
    assert _errors(proc) == [f"error: {holds}: no chunk left to draw (3 hold/stop chunks "
                             "skipped)"]
    assert not png.exists()


def test_recorded_mcap_chunks_carry_their_crc(tmp_path):
    """The recorder writes each chunk's CRC-32 (rosbags' writer leaves it 0: unchecked)."""
    import struct

    bag = write_bag(tmp_path / "b", "mcap", BagPlan(duration_s=1.0))
    f = next(bag.glob("*.mcap"))
    data = f.read_bytes()
    chunks = mcap_chunk_records(f)
    assert chunks
    for start, _ in chunks:
        crc, comp_len = struct.unpack_from("<II", data, start + 24)
        rec_at = start + 32 + comp_len
        (rec_len,) = struct.unpack_from("<Q", data, rec_at)
        assert crc != 0 and crc == zlib.crc32(data[rec_at + 8:rec_at + 8 + rec_len])
    copy = tmp_path / "copy"
    shutil.copytree(bag, copy)
    _zero_fill(copy, n=64)
    from ate_ros.core.data.convert import ConversionSpec, convert_bags

    m = convert_bags([bag, copy], toy_embodiment(), tmp_path / "out",
                     ConversionSpec(val_fraction=0))
    assert [b["status"] for b in m.bags] == ["ok", "failed"]
    assert "CRC mismatch" in m.bags[1]["error"]
