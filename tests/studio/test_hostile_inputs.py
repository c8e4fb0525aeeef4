"""Hostile inputs: a generated corpus of malformed audio (``tests/support/hostile_inputs.py``) and damaged
workspace / trace files.  Every one gives one clear line that names the file, in the library,
the CLI and the studio, and the work goes on with the rest: nothing crashes, hangs or slips
through as garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from audiosae import cli
from audiosae.audio import load_audio, probe_audio, scan_audio
from audiosae.errors import AudioInputError, WorkspaceError, display_path
from tests.support.hostile_inputs import (ACCEPTED, DEMO_SAE, REJECTED, WARNED, HostileCase, WorkspaceDamage, good_files,
                                  hostile_workspace_damages, make_hostile_audio, make_tiny_trace)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
CASE_SECONDS = 5.0          # no single file may take longer, whatever it holds
NOT_IN_FOLDER_SCANS = {     # cases a scan treats differently from probe_audio on the path
    "folder-named-wav": "a scan searches a folder called x.wav for audio; it does not read it as a file",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[HostileCase], list[Path]]:
    root = tmp_path_factory.mktemp("hostile")
    start = time.monotonic()
    cases = make_hostile_audio(root / "hostile")
    assert time.monotonic() - start < 5.0, "the corpus must stay cheap to generate"
    return root / "hostile", cases, good_files(root / "good")


def runnable(cases: list[HostileCase]) -> list[HostileCase]:
    return [c for c in cases if c.skip_reason is None]


def named(path: Path) -> str:
    """How a message names ``path``."""
    return display_path(path)


def run_bounded(fn, path: Path, seconds: float = CASE_SECONDS):
    """``fn()`` in a thread; (result, exception, elapsed), or a TimeoutError when it blocks.

    A FIFO opened for reading blocks until a writer comes: on a timeout one is opened
    (non-blocking) to release the thread, so a regression fails the test instead of hanging it."""
    box: dict = {}

    def target() -> None:
        start = time.monotonic()
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test to judge
            box["error"] = exc
        box["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds * 4)
    if thread.is_alive():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        thread.join(5)
        return None, TimeoutError(f"{path.name} blocked for over {seconds * 4:.0f} s"), seconds * 4
    return box.get("result"), box.get("error"), box["elapsed"]


# ---- the corpus ------------------------------------------------------------------------------------
def test_the_corpus_is_large_and_covers_every_kind_of_damage(corpus):
    folder, cases, _ = corpus
    assert len(cases) >= 40 and len({c.name for c in cases}) == len(cases)
    outcomes = Counter(c.outcome for c in cases)
    assert outcomes[REJECTED] >= 40 and outcomes[WARNED] >= 4 and outcomes[ACCEPTED] >= 5, outcomes
    assert {c.stage for c in cases} == {"probe", "load", "scan"}
    # The 3-hour file is a real 3-hour WAV (sparse, so it costs no disk).
    three_hours = next(c for c in cases if c.name == "three-hours-of-silence").path
    info = probe_audio(three_hours)
    assert info.seconds == pytest.approx(3 * 3600)
    skipped = [c for c in cases if c.skip_reason]
    assert all(c.name in ("unreadable", "fifo-named-wav") for c in skipped), skipped


def _outcome(case: HostileCase) -> tuple[str, str, list[str]]:
    """(what happened, the message, warnings) for one case through probe_audio then load_audio."""
    warnings: list[str] = []
    try:
        probe_audio(case.path)
    except AudioInputError as exc:
        return "rejected-by-probe", str(exc), warnings
    try:
        wave = load_audio(case.path, 24000, 1, on_warning=warnings.append)
    except AudioInputError as exc:
        return "rejected-by-load", str(exc), warnings
    assert wave.ndim == 2 and wave.shape[0] == 1 and wave.shape[1] > 0 and np.isfinite(wave).all()
    return "accepted", "", warnings


def test_every_case_gets_exactly_its_outcome_and_one_clear_line(corpus):
    _, cases, _ = corpus
    failures = []
    for case in runnable(cases):
        if case.stage == "scan":
            continue  # a folder loop: see the scan test
        result, error, elapsed = run_bounded(lambda c=case: _outcome(c), case.path)
        if error is not None:  # anything but AudioInputError escaping is a bug
            failures.append(f"{case.name}: {type(error).__name__}: {error}")
            continue
        happened, message, warnings = result
        problems = []
        if elapsed > CASE_SECONDS:
            problems.append(f"took {elapsed:.1f} s")
        if case.outcome == REJECTED:
            if happened != f"rejected-by-{case.stage}":
                problems.append(f"expected rejected-by-{case.stage}, got {happened}")
            lines = [message]
        else:
            if happened != "accepted":
                problems.append(f"expected {case.outcome}, got {happened}: {message}")
            if case.outcome == WARNED and len(warnings) != 1:
                problems.append(f"expected one warning, got {warnings}")
            if case.outcome == ACCEPTED and warnings:
                problems.append(f"expected no warning, got {warnings}")
            lines = warnings
        for line in lines:
            if "\n" in line or "\r" in line or not line.isprintable():
                problems.append(f"not one printable line: {line!r}")
            if named(case.path) not in line:
                problems.append(f"does not name the file: {line!r}")
            if case.fragment not in line:
                problems.append(f"lacks {case.fragment!r}: {line!r}")
            line.encode("ascii", "backslashreplace")  # printable everywhere, never a UnicodeEncodeError
        if problems:
            failures.append(f"{case.name}: " + "; ".join(problems))
    assert not failures, "\n".join(failures)


def test_error_keeps_the_real_path_for_code_and_an_escaped_one_for_people(corpus):
    _, cases, _ = corpus
    case = next(c for c in cases if c.name == "non-utf8-name-garbage")
    with pytest.raises(AudioInputError) as err:
        probe_audio(case.path)
    assert err.value.path == str(case.path)                      # opens the same file again
    assert "broken-\\xfe\\xff.wav" in str(err.value)             # readable, and encodable anywhere
    newline = next(c for c in cases if c.name == "newline-and-quotes-in-name")
    with pytest.raises(AudioInputError) as err:
        probe_audio(newline.path)
    assert 'line\\none "double" \'single\'.wav' in str(err.value) and "\n" not in str(err.value)


def test_unreadable_file_message(corpus, monkeypatch):
    """chmod 000 stops everyone but root; the message is checked through os.access when root."""
    _, cases, _ = corpus
    case = next(c for c in cases if c.name == "unreadable")
    if case.skip_reason:
        import audiosae.audio as audio

        monkeypatch.setattr(audio.os, "access", lambda path, mode: False)
    with pytest.raises(AudioInputError, match="permission denied") as err:
        probe_audio(case.path)
    assert named(case.path) in str(err.value)


def test_silence_is_found_by_streaming_not_by_decoding_everything(corpus, monkeypatch):
    import audiosae.audio as audio

    _, cases, _ = corpus
    three_hours = next(c for c in cases if c.name == "three-hours-of-silence").path
    largest = []
    real_read = audio.sf.SoundFile.read

    def read(self, *args, **kwargs):
        block = real_read(self, *args, **kwargs)
        largest.append(block.nbytes)
        return block

    def no_full_read(*args, **kwargs):
        raise AssertionError("decoded the whole file at once")

    monkeypatch.setattr(audio.sf.SoundFile, "read", read)
    monkeypatch.setattr(audio.sf, "read", no_full_read)
    start = time.monotonic()
    with pytest.raises(AudioInputError, match="only silence"):
        load_audio(three_hours, 24000, 1)
    assert time.monotonic() - start < CASE_SECONDS
    assert len(largest) > 100 and max(largest) <= 4 * audio.CONTENT_BLOCK_FRAMES  # float32 mono blocks
    # Ordinary audio stops after the first block that has signal.
    largest.clear()
    late = next(c for c in cases if c.name == "silence-then-tone").path
    audio.check_content(late)
    assert len(largest) == 2  # 10 s of silence is more than one block at 8 kHz


def test_a_cut_mp3_is_never_read_past_its_end(corpus):
    """soundfile's blocks() would hand out uninitialised memory after the data of a cut MP3 (its
    header promises more frames): garbage that reads as NaN or as audio, at random."""
    import audiosae.audio as audio

    _, cases, _ = corpus
    cut = next(c for c in cases if c.name == "mp3-cut-mid-data").path
    for _ in range(5):
        audio.check_content(cut)
        wave = load_audio(cut)
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0


# ---- folder scans and the CLI ---------------------------------------------------------------------
def test_a_folder_scan_keeps_the_good_files_and_lists_each_bad_one_once(corpus):
    folder, cases, good = corpus
    start = time.monotonic()
    result = scan_audio([folder, *good])
    assert time.monotonic() - start < 10.0
    kept = {str(p) for p in result.files}
    assert {str(p) for p in good} <= kept
    listed = Counter(p.path for p in result.problems)
    assert all(n == 1 for n in listed.values()), listed
    for case in runnable(cases):
        if case.name in NOT_IN_FOLDER_SCANS:
            continue
        if case.rejected and case.stage in ("probe", "scan"):
            assert listed.get(str(case.path)) == 1, f"{case.name} not listed as skipped"
            message = next(str(p) for p in result.problems if p.path == str(case.path))
            assert case.fragment in message, message
        else:  # decoding finds the rest; a header scan keeps them
            assert str(case.path) in kept, f"{case.name} was dropped by the scan"
    expected = sum(1 for c in runnable(cases) if c.rejected and c.stage in ("probe", "scan")
                   and c.name not in NOT_IN_FOLDER_SCANS)
    assert len(result.problems) == expected
    assert f"{len(result.files)} audio file(s) usable, {expected} skipped" in result.summary()
    # The same files named one by one (as a drop or a command line does) get the same messages.
    direct = [c for c in runnable(cases) if c.rejected and c.stage == "probe" and c.name not in NOT_IN_FOLDER_SCANS]
    one_by_one = scan_audio([c.path for c in direct])
    assert not one_by_one.files and [p.path for p in one_by_one.problems] == [str(c.path) for c in direct]
    assert all(c.fragment in str(p) for c, p in zip(direct, one_by_one.problems))


def test_cli_build_over_the_hostile_folder_uses_the_good_files_and_lists_the_rest(corpus, tmp_path):
    folder, cases, good = corpus
    workspace = tmp_path / "ws"
    # An ASCII-only stdout: names with accents, emoji or undecodable bytes must still print.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "ascii"}
    command = [sys.executable, "-m", "audiosae.cli", "build", str(workspace), "--backend", "mel", "--audio",
               str(folder), *map(str, good), "--device", "cpu", "--crepe-model", "tiny"]
    done = subprocess.run(command, env=env, capture_output=True, timeout=600, cwd=REPO)
    out, err = done.stdout.decode("ascii"), done.stderr.decode("ascii", "replace")
    assert done.returncode == 0, err[-2000:]
    assert "Traceback" not in out + err and "internal error" not in out + err
    lines = out.splitlines()
    rejected = [c for c in runnable(cases) if c.rejected and c.name not in NOT_IN_FOLDER_SCANS]
    warned = [c for c in runnable(cases) if c.outcome == WARNED]
    assert f"skipped {len(rejected)} file(s):" in lines
    assert f"used {len(warned)} file(s) with a warning:" in lines
    for case in rejected + warned:
        shown = named(case.path).encode("ascii", "backslashreplace").decode("ascii")  # as the terminal got it
        mentions = [line for line in lines if line.startswith("  ") and shown + ":" in line]
        assert len(mentions) == 1 and case.fragment in mentions[0], (case.name, mentions)
    from audiosae.workspace import Workspace

    manifest = Workspace.open(workspace).manifest()
    used = {Path(r.path).name for r in manifest.sources.values()}
    expected = {p.name for p in good} | {c.path.name for c in runnable(cases) if not c.rejected}
    expected |= {c.path.name for c in cases if c.name == "unreadable" and c.skip_reason}  # root reads it
    assert used == expected


BAD_CLIPS = ("empty", "text-as-wav", "fifo-named-wav", "flac-cut-mid-data", "digital-silence", "one-nan",
             "newline-and-quotes-in-name", "non-utf8-name-garbage", "file-symlink-loop-a")


@pytest.mark.parametrize("command", ["steer", "export-lanes"])
def test_cli_commands_on_one_bad_file_exit_1_with_one_line(corpus, tmp_path, capsys, command):
    _, cases, _ = corpus
    for case in (c for c in runnable(cases) if c.name in BAD_CLIPS):
        out = tmp_path / f"{case.name}-out"
        argv = [command, str(DEMO), str(case.path), "--device", "cpu"]
        argv += (["--attribute", "pitch", "--target", "A4", "--out", str(out) + ".wav"] if command == "steer"
                 else ["--out", str(out)])
        rc = cli.main(argv)
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert rc == 1 and captured.out == "", (case.name, captured)
        assert len(lines) == 1 and lines[0].startswith("audiosae: error: "), (case.name, lines)
        assert named(case.path) in lines[0] and case.fragment in lines[0], lines[0]
        assert not list(tmp_path.glob(f"{case.name}-out*")), "nothing is written for a bad input"


def test_cli_on_an_ascii_terminal_prints_an_accented_name(corpus, tmp_path):
    _, cases, _ = corpus
    case = next(c for c in cases if c.name == "unicode-name-garbage")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "audiosae.cli", "export-lanes", str(DEMO), str(case.path),
                           "--out", str(tmp_path / "x"), "--device", "cpu"], env=env, capture_output=True,
                          timeout=120, cwd=REPO)
    err = done.stderr.decode("ascii")  # escaped, so pure ASCII
    assert done.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"audiosae: error: {named(case.path)}: not a readable audio file "
                                        f"(Format not recognised.)".encode("ascii", "backslashreplace").decode()]


def test_steer_warns_about_clipped_input_and_records_it(corpus, tmp_path, capsys):
    _, cases, _ = corpus
    case = next(c for c in cases if c.name == "clipped-square")
    out = tmp_path / "steered.wav"
    rc = cli.main(["steer", str(DEMO), str(case.path), "--attribute", "pitch", "--target", "A4", "--out", str(out),
                   "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0 and out.is_file()
    warnings = [line for line in captured.err.splitlines() if line.startswith("audiosae: warning: ")]
    assert len(warnings) == 1 and "full scale (clipped)" in warnings[0] and named(case.path) in warnings[0]
    side_car = json.loads(out.with_suffix(".wav.json").read_text())
    assert len(side_car["input_warnings"]) == 1 and "clipped" in side_car["input_warnings"][0]


# ---- damaged workspace and trace files ---------------------------------------------------------------
DAMAGES = hostile_workspace_damages()


@pytest.fixture(scope="module", autouse=True)
def demo_stays_untouched():
    """The damaged copies link to the demo's big files: prove nothing wrote through a link."""
    def snapshot():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in DEMO.rglob("*") if p.is_file()}

    before = snapshot()
    yield
    assert snapshot() == before, "a test changed resources/demo"


def damaged_copy(damage: WorkspaceDamage, root: Path) -> Path:
    """A copy of the demo workspace (or a tiny trace) with ``damage`` applied to one file.

    Large files other than the damaged one are symbolic links (every write in audiosae is a
    replace, which swaps a link for a file and never writes through it)."""
    if damage.part == "trace":
        folder = make_tiny_trace(root / "trace")
    else:
        folder = root / "ws"
        for src in DEMO.rglob("*"):
            dst = folder / src.relative_to(DEMO)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            elif src.stat().st_size > 100_000 and src.relative_to(DEMO).as_posix() != damage.file:
                dst.symlink_to(src)
            else:
                dst.write_bytes(src.read_bytes())
    damage.damage(folder / damage.file)
    return folder


def load_part(part: str, root: Path) -> None:
    """What the app does to read each kind of file."""
    from audiosae.feature_index import FeatureIndex
    from audiosae.generation.trace import load_trace
    from audiosae.probes import ProbeSet
    from audiosae.report import workspace_report
    from audiosae.sae import SparseAutoencoder
    from audiosae.workspace import Workspace

    if part == "trace":
        load_trace(root)
        return
    ws = Workspace.open(root)
    if part == "manifest":
        ws.manifest()
    elif part == "shard":
        store = ws.frame_store()
        for i in range(len(store.manifest.shards)):
            store.load_shard(i)
    elif part in ("sae", "sae-metrics"):
        SparseAutoencoder.load(ws.sae_dir(DEMO_SAE))
    elif part == "probes":
        ProbeSet.load(ws.probe_dir(DEMO_SAE))
    elif part == "probe-metrics":
        workspace_report(ws)
    elif part == "feature-index":
        FeatureIndex.read(ws.sae_dir(DEMO_SAE) / "feature_index.safetensors")


def test_the_undamaged_copies_load(tmp_path):
    ws = damaged_copy(WorkspaceDamage("none", "workspace.json", lambda p: None, "workspace"), tmp_path / "a")
    for part in ("manifest", "shard", "sae", "probes", "probe-metrics", "feature-index"):
        load_part(part, ws)
    assert cli.main(["report", str(ws), "--quiet"]) == 0
    load_part("trace", damaged_copy(WorkspaceDamage("none", "trace.json", lambda p: None, "trace"), tmp_path / "b"))


def test_there_are_many_damages_for_every_kind_of_file():
    kinds = Counter(d.part for d in DAMAGES)
    assert len(DAMAGES) == len({d.name for d in DAMAGES}) >= 100
    assert all(kinds[p] >= 3 for p in ("workspace", "manifest", "shard", "sae", "sae-metrics", "probes",
                                       "probe-metrics", "feature-index", "trace")), kinds


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.name)
def test_a_damaged_file_gives_one_clear_error_naming_it(damage, tmp_path, capsys):
    root = damaged_copy(damage, tmp_path)
    file_name = damage.names or Path(damage.file).name
    with pytest.raises(WorkspaceError) as err:
        load_part(damage.part, root)
    message = str(err.value)
    assert "\n" not in message and file_name in message, message
    assert damage.fragment.lower() in message.lower(), message
    if damage.part == "trace":
        argv = ["trace-report", str(root)]
    elif damage.part == "feature-index":
        # A cache: a damaged index is rebuilt, except one from a newer audiosae, which is left alone.
        from audiosae.feature_index import load_feature_index
        from audiosae.workspace import Workspace

        if "schema-999" in damage.name:
            with pytest.raises(WorkspaceError, match="newer"):
                load_feature_index(Workspace.open(root), DEMO_SAE)
        else:
            assert load_feature_index(Workspace.open(root), DEMO_SAE) is None
        return
    elif damage.report_sees:
        argv = ["report", str(root)]
    else:
        return
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("audiosae: error: ") and file_name in lines[0], lines
    assert "Traceback" not in captured.err and captured.out == ""


# ---- the studio ------------------------------------------------------------------------------------
GUI_CLIPS = ("empty", "text-as-wav", "rate-0-hz", "flac-cut-mid-data", "three-hours-of-silence", "pure-dc",
             "one-nan", "fifo-named-wav", "non-utf8-name-garbage", "newline-and-quotes-in-name", "dangling-symlink")
GUI_DAMAGES = ("workspace-truncated-json", "workspace-schema-999", "workspace-spec-nan", "sae-weights-truncated",
               "sae-cfg-d-in-changed", "probes-schema-999", "probe-weights-is-a-pickle", "sae-metrics-fvu-text",
               "probe-metrics-accuracy-text")
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture
def window(main_window):
    return main_window


def _one_dialog(qtbot, window, *needles: str) -> str:
    """The single error dialog now shown: its text has every needle; it is closed afterwards."""
    dialogs = window.error_dialogs
    assert len(dialogs) == 1, [d.text() for d in dialogs]
    text = dialogs[0].text()
    assert "\n" not in text and all(n in text for n in needles), (text, needles)
    dialogs[0].close()
    qtbot.waitUntil(lambda: not window.error_dialogs, timeout=2_000)
    return text


def test_the_studio_shows_one_message_per_bad_clip_and_keeps_its_clip(qtbot, window, corpus):
    _, cases, good = corpus
    by_name = {c.name: c for c in runnable(cases)}
    with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert window.open_demo()
    shown = window.state.clip_path
    for name in GUI_CLIPS:
        if name not in by_name:
            continue
        case = by_name[name]
        with qtbot.waitSignal(window.clip_failed, timeout=LOAD_TIMEOUT_MS) as failed:
            window.open_audio(case.path)
        message = failed.args[0]
        assert named(case.path) in message and case.fragment in message and "\n" not in message, message
        assert message in window.statusBar().currentMessage()
        _one_dialog(qtbot, window, message)
        assert window.state.clip_path == shown, f"{name} replaced the clip on show"
    clipped = by_name["clipped-square"]
    with qtbot.waitSignals([window.state.clip_changed, window.clip_warning], timeout=LOAD_TIMEOUT_MS):
        window.open_audio(clipped.path)
    status = window.statusBar().currentMessage()
    assert "full scale (clipped)" in status and named(clipped.path) in status and not window.error_dialogs
    assert window.state.clip_path == str(clipped.path) and window.state.analysis.warnings
    with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        window.open_audio(good[0])
    assert window.state.clip_path == str(good[0]) and not window.state.analysis.warnings


def test_every_case_through_the_studio_clip_job(corpus):
    """All cases through the function the explorer runs for File > Open audio (no window needed)."""
    pytest.importorskip("PySide6")
    from audiosae.analysis import LoadedModels
    from audiosae.jobs import CancelToken, null_progress
    from studio.main_window import analyse_clip_job

    _, cases, _ = corpus
    models = LoadedModels.load(DEMO, device="cpu")
    failures = []
    for case in runnable(cases):
        if case.stage == "scan":
            continue
        result, error, _ = run_bounded(
            lambda c=case: analyse_clip_job(models, str(c.path), progress=null_progress, cancel=CancelToken()),
            case.path, seconds=30.0)
        if case.rejected:
            if not isinstance(error, AudioInputError) or case.fragment not in str(error):
                failures.append(f"{case.name}: expected AudioInputError with {case.fragment!r}, got {error!r}")
            continue
        if error is not None:
            failures.append(f"{case.name}: {type(error).__name__}: {error}")
            continue
        analysis = result[0]
        warnings = analysis.warnings
        if analysis.n_frames == 0 or (case.outcome == WARNED) != bool(warnings):
            failures.append(f"{case.name}: {analysis.n_frames} frames, warnings {warnings}")
        elif warnings and (len(warnings) != 1 or case.fragment not in warnings[0]):
            failures.append(f"{case.name}: warnings {warnings}")
    assert not failures, "\n".join(failures)


def test_the_wizard_lists_each_skipped_file_with_its_reason(qtbot, corpus, tmp_path):
    pytest.importorskip("pytestqt")
    from studio.settings import StudioSettings
    from studio.widgets.wizard.wizard import TrainingWizard
    from studio.workers import JobRunner

    folder, cases, good = corpus
    runner = JobRunner()
    wizard = TrainingWizard(runner, StudioSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(wizard)
    wizard.show()
    try:
        page = wizard.audio_page
        with qtbot.waitSignal(page.scan_done, timeout=LOAD_TIMEOUT_MS):
            page.add_paths([folder, *good])
        skipped = page.skipped_problems()
        header_problems = [c for c in runnable(cases) if c.rejected and c.stage in ("probe", "scan")
                           and c.name not in NOT_IN_FOLDER_SCANS]
        assert len(skipped) == len(header_problems)
        for case in header_problems:
            lines = [line for line in skipped if line.startswith(named(case.path) + ": ")]
            assert len(lines) == 1 and case.fragment in lines[0], (case.name, lines)
        assert sorted(page.skipped_list.item(i).text() for i in range(page.skipped_list.count())) == sorted(skipped)
        assert not page.skipped_list.isHidden() and f"Skipped {len(skipped)} file(s)" in page.skipped_label.text()
        usable = set(page.usable_files())
        assert {str(p) for p in good} <= usable
        assert all(str(c.path) in usable for c in runnable(cases) if c.stage == "load")
        names = {page.file_tree.topLevelItem(i).text(0) for i in range(page.file_tree.topLevelItemCount())}
        assert "latin1-caf\\xe9-\\xff.wav" in names  # undecodable bytes shown, not dropped by Qt
    finally:
        wizard.close()
        assert runner.shutdown()


def test_the_studio_reports_a_damaged_workspace_and_stays_usable(qtbot, window, tmp_path):
    for name in GUI_DAMAGES:
        damage = next(d for d in DAMAGES if d.name == name)
        root = damaged_copy(damage, tmp_path / name)
        file_name = damage.names or Path(damage.file).name
        if damage.part == "workspace":  # read at once: open_workspace says no
            assert not window.open_workspace(root)
        else:  # read by the model-loading job
            with qtbot.waitSignal(window.models_failed, timeout=LOAD_TIMEOUT_MS) as failed:
                assert window.open_workspace(root)
            assert file_name in failed.args[0] and damage.fragment.lower() in failed.args[0].lower()
        _one_dialog(qtbot, window, file_name)
        assert file_name in window.statusBar().currentMessage()
    with qtbot.waitSignals([window.state.models_changed, window.state.clip_changed], timeout=LOAD_TIMEOUT_MS):
        assert window.open_demo()
    assert window.state.models is not None and window.state.analysis is not None
