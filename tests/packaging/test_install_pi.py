"""scripts/install_pi.sh on the systems it meets (issue 24): 32-bit ARM and
JetPack 4/5 are refused in one line before anything is installed; on a Jetson
(JetPack 6) a .onnx model is configured for TensorRT, with the engine cache in
the unit's CacheDirectory; and, on Debian's own python3-numpy/python3-opencv
(the Pi's mechanism, as tests/packaging/test_system_site.py), a .onnx model gets
ONNX Runtime's CPU build from PyPI in the venv the script makes, a config with
the delegate that roadseg-run streams coverage from, and a unit systemd accepts.

The system is described to the script through the variables it reads for the
tests only (ROADSEG_INSTALL_UNAME_M, ROADSEG_INSTALL_DPKG_ARCH,
ROADSEG_INSTALL_TEGRA_RELEASE); everything else is real: bash, pip, PyPI,
onnxruntime, mosquitto, systemd-analyze."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.test_system_site import ENV, ROOT, system_stack_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

SCRIPT = ROOT / "scripts" / "install_pi.sh"
# first lines of /etc/nv_tegra_release as each L4T release writes them (NVIDIA Jetson Linux)
TEGRA = {"R32.7.4": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9",
         "R34.1.1": "# R34 (release), REVISION: 1.1, GCID: 30414990, BOARD: t186ref, EABI: aarch64, DATE: Tue May 17",
         "R35.4.1": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1",
         "R36.4.3": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8",
         "R38.2.0": "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, DATE: Fri Aug 22"}


def install_pi(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``bash scripts/install_pi.sh ARGS`` from the checkout; ``env`` adds to the test environment."""
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=dict(ENV, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)


def jetson(tmp_path: Path, release: str) -> dict:
    """The environment of an aarch64 Jetson with ``release`` in its nv_tegra_release."""
    f = tmp_path / f"nv_tegra_release-{release}"
    f.write_text(TEGRA[release] + "\n")
    return {"ROADSEG_INSTALL_UNAME_M": "aarch64", "ROADSEG_INSTALL_DPKG_ARCH": "arm64",
            "ROADSEG_INSTALL_TEGRA_RELEASE": str(f)}


def dry_run(*args: str, env: dict) -> tuple[str, str, str]:
    """``install_pi.sh --dry-run``: (the roadseg.toml it would write, the unit, the header line naming the
    platform and the ONNX Runtime wheel's source)."""
    r = install_pi("--dry-run", *args, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    header, rest = r.stdout.split("\n", 1)
    config, unit = rest.split("# /etc/systemd/system/roadseg.service\n")
    return config, unit, header


def one_line_refusal(r: subprocess.CompletedProcess) -> str:
    """The refusal's one stderr line (exit 2, nothing on stdout, no traceback or pip output)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and not r.stdout, (r.returncode, r.stdout, r.stderr)
    return lines[0]


# -- refusals: before anything is installed -----------------------------------------------------------------

@pytest.mark.parametrize("machine, dpkg_arch", [("armv7l", "armhf"), ("armv6l", "armhf"), ("armv7l", ""),
                                                 ("aarch64", "armhf"),   # 32-bit Pi OS on a Pi 4/5's 64-bit kernel
                                                 ("armv8l", "armhf")])
def test_32bit_arm_is_refused_in_one_line(machine, dpkg_arch, tiny_tflite, tmp_path):
    prefix = tmp_path / "opt"
    r = install_pi("--venv-only", "--prefix", str(prefix), "--source", "synthetic", "--model", str(tiny_tflite),
                   env={"ROADSEG_INSTALL_UNAME_M": machine, "ROADSEG_INSTALL_DPKG_ARCH": dpkg_arch}, timeout=60)
    line = one_line_refusal(r)
    assert line.startswith("install_pi.sh: 32-bit ARM") and "flash Raspberry Pi OS (64-bit)" in line, line
    assert machine in line and not prefix.exists()  # no venv, no pip


@pytest.mark.parametrize("machine, dpkg_arch", [("aarch64", "arm64"), ("x86_64", "amd64")])
def test_64bit_systems_are_not_refused(machine, dpkg_arch, tiny_tflite):
    config, _, header = dry_run("--model", str(tiny_tflite),
                                env={"ROADSEG_INSTALL_UNAME_M": machine, "ROADSEG_INSTALL_DPKG_ARCH": dpkg_arch})
    assert "platform debian-bookworm" in header and tomllib.loads(config)["model"].endswith("/tiny.tflite")


@pytest.mark.parametrize("release, jetpack, python", [("R32.7.4", 4, "3.6"), ("R34.1.1", 5, "3.8"),
                                                      ("R35.4.1", 5, "3.8")])
@pytest.mark.parametrize("platform", [[], ["--platform", "jetpack6"]])
def test_jetpack_before_6_is_refused_in_one_line(release, jetpack, python, platform, tiny_tflite, tmp_path):
    prefix = tmp_path / "opt"
    r = install_pi("--venv-only", "--prefix", str(prefix), "--source", "csi:0", "--model", str(tiny_tflite),
                   *platform, env=jetson(tmp_path, release), timeout=60)
    line = one_line_refusal(r)
    assert f"JetPack {jetpack} (Python {python}) is not supported; use JetPack 6" in line, line
    assert f"L4T {release}" in line and not prefix.exists()


def test_jetpack_6_is_detected_and_a_newer_release_is_named(tiny_tflite, tmp_path):
    _, _, header = dry_run("--model", str(tiny_tflite), env=jetson(tmp_path, "R36.4.3"))
    assert "platform jetpack6" in header
    newer = jetson(tmp_path, "R38.2.0")
    line = one_line_refusal(install_pi("--dry-run", "--model", str(tiny_tflite), env=newer, timeout=60))
    assert "L4T R38.2.0 is newer than JetPack 6" in line and "--platform jetpack6" in line
    _, _, header = dry_run("--model", str(tiny_tflite), "--platform", "jetpack6", env=newer)
    assert "platform jetpack6" in header
    unreadable = tmp_path / "garbled"
    unreadable.write_text("not a release line\n")
    line = one_line_refusal(install_pi("--dry-run", "--model", str(tiny_tflite), timeout=60,
                                       env={"ROADSEG_INSTALL_TEGRA_RELEASE": str(unreadable)}))
    assert "cannot read the L4T release" in line


@pytest.mark.parametrize("args, problem", [
    (["--source", 'v4l2:/dev/video0" x = "1'], "has a quote"),
    (["--device-id", "car 1"], "--device-id car\\ 1"),
    (["--mqtt-host", "broker.local\nfps = 1"], "is not a host name"),
    (["--fps", "fast"], "--fps fast is not"),
    (["--platform", "jetpack5"], "--platform jetpack5: no constraints file"),
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--prefix", "/opt/road seg"], "--prefix /opt/road\\ seg"),
    (["--delegate", "X", "--delegate-option", "novalue"], "is not KEY=VALUE"),
    (["--delegate", "X", "--delegate-option", "a=1;fps=0"], "is not KEY=VALUE"),
    (["--delegate-option", "trt_fp16_enable=1"], "needs --delegate"),
    (["--model"], "--model needs a value"),
])
def test_values_that_would_break_the_config_or_unit_are_refused(args, problem, tiny_tflite):
    line = one_line_refusal(install_pi("--dry-run", "--model", str(tiny_tflite), *args, timeout=60))
    assert problem in line, line


# -- the Jetson GPU path: what the service is configured with -------------------------------------------------

def test_jetson_onnx_service_runs_tensorrt_with_its_cache_in_the_cache_directory(tiny_tflite, tmp_path):
    from edge_runtime.commands.settings import load_settings
    from edge_runtime.model.interpreter import parse_delegate_options
    onnx = tmp_path / "student.onnx"  # the script reads the name and the sidecar; the dry run loads nothing
    shutil.copy(tiny_tflite, onnx)
    shutil.copy(tiny_tflite.with_suffix(".json"), onnx.with_suffix(".json"))
    config, unit, header = dry_run("--model", str(onnx), "--source", "csi:0", "--device-id", "car1",
                                   env=jetson(tmp_path, "R36.4.3"))
    assert "onnxruntime-gpu from https://pypi.jetson-ai-lab.io/jp6/" in header  # NVIDIA's wheel for JetPack 6
    cfg = tmp_path / "roadseg.toml"
    cfg.write_text(config)
    s = load_settings({}, str(cfg), env={})  # roadseg-run's own reading of it
    assert s.delegate == "TensorrtExecutionProvider" and s.model.endswith("/models/student.onnx")
    options = parse_delegate_options(s.delegate_options)
    assert options["trt_fp16_enable"] == "1" and options["trt_engine_cache_enable"] == "1"
    cache_dirs = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("CacheDirectory=")]
    assert cache_dirs == ["roadseg"] and options["trt_engine_cache_path"] == "/var/cache/roadseg"

    cuda = tomllib.loads(dry_run("--model", str(onnx), "--delegate", "CUDAExecutionProvider",
                                 env=jetson(tmp_path, "R36.4.3"))[0])
    assert cuda["delegate"] == "CUDAExecutionProvider" and "delegate_options" not in cuda
    own = tomllib.loads(dry_run("--model", str(onnx), "--delegate-option", "trt_fp16_enable=0",
                                env=jetson(tmp_path, "R36.4.3"))[0])
    assert own["delegate_options"] == "trt_fp16_enable=0"  # the user's options replace the defaults
    for model, env in ((tiny_tflite, jetson(tmp_path, "R36.4.3")), (onnx, {})):  # LiteRT on a Jetson; ORT elsewhere
        cpu = tomllib.loads(dry_run("--model", str(model), env=env)[0])
        assert "delegate" not in cpu and "delegate_options" not in cpu
    edgetpu = tomllib.loads(dry_run("--model", str(tiny_tflite), "--delegate", "libedgetpu.so.1",
                                    "--delegate-option", "device=usb:0", env={})[0])  # a LiteRT delegate library
    assert edgetpu["delegate"] == "libedgetpu.so.1" and edgetpu["delegate_options"] == "device=usb:0"


# -- the install itself: Debian's system site packages, ONNX Runtime's CPU build -----------------------------

def tiny_onnx(directory: Path) -> Path:
    """A [1,64,128,3] uint8 -> [1,8,16,8] float32 logits ONNX graph (cast, NHWC->NCHW, one 8x8/8 convolution,
    back to NHWC) built with onnx's helper API, written with its sidecar by the project's write_pair; the
    sidecar is the checked-in tiny model's with the input/output of this graph."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_runtime.contract.sidecar import write_pair
    meta = json.loads((ROOT / "tests" / "data" / "tiny-int8.json").read_text())
    (h, w), stride, classes = (meta["input"]["height"], meta["input"]["width"]), 8, len(meta["classes"])
    kernel = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.01, (classes, 3, stride, stride))
                                     .astype(np.float32), "kernel")
    nodes = [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "kernel"], ["scores"], strides=[stride, stride],
                              kernel_shape=[stride, stride]),
             helper.make_node("Transpose", ["scores"], ["logits"], perm=[0, 2, 3, 1])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, h, w, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             [1, h // stride, w // stride, classes])], [kernel])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    meta.update(name="tiny-onnx", precision="fp32")
    meta["output"] = {"kind": "logits", "dtype": "float32", "scale": 1.0, "zero_point": 0,
                      "height": h // stride, "width": w // stride, "stride": stride}
    meta.pop("conversion", None)
    for key in ("scale", "zero_point"):  # an ONNX input carries no quantization
        meta["input"].pop(key, None)
    return write_pair(model.SerializeToString(), meta, directory / "student.onnx")[0]


REPO_URL = "https://releases.example/fleet/"


def trust_root(folder: Path) -> Path:
    """A fleet's trust root, as ``roadseg-release init`` and ``trust-root`` write it (keys in ``folder``)."""
    pytest.importorskip("tuf.api.metadata")
    from calibration.release import ReleaseRepo
    return ReleaseRepo.init(folder / "repo", folder / "keys").trust_root(folder / "trust-root.json")


@pytest.fixture(scope="module")
def onnx_install(tmp_path_factory):
    """``install_pi.sh --venv-only`` of a .onnx on Debian's python3 with apt's NumPy and OpenCV (run once)."""
    problem = system_stack_problem()
    if problem:
        pytest.skip(problem)
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("install")
    model = tiny_onnx(d)
    prefix = d / "opt"
    r = install_pi("--venv-only", "--prefix", str(prefix), "--platform", "debian-bookworm", "--source",
                   "synthetic:64x128@40", "--device-id", "ort1", "--delegate", "CPUExecutionProvider",
                   "--model", str(model), "--trust-root", str(trust_root(d)), "--update-repo", REPO_URL)
    return prefix, model, r


@pytest.mark.integration
def test_onnx_model_gets_onnxruntime_and_a_config_that_runs(onnx_install, broker):
    from tests.support import Subscriber
    prefix, model, r = onnx_install
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "installing onnxruntime>=1.18 from PyPI" in r.stdout  # the wheel's source, named
    assert "ok   model" in r.stdout and "ok   cv2" in r.stdout   # roadseg-doctor loaded the .onnx
    py = prefix / "venv" / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import json, numpy, onnxruntime as o; print(json.dumps([numpy.__file__, "
                            "o.__file__, o.get_available_providers()]))"], capture_output=True, text=True, env=ENV)
    np_file, ort_file, providers = json.loads(where.stdout)
    assert np_file.startswith("/usr/lib/python3/dist-packages")   # still apt's NumPy 1.x
    assert ort_file.startswith(str(prefix / "venv")) and "CPUExecutionProvider" in providers
    config = tomllib.loads((prefix / "roadseg.toml").read_text())
    assert config["delegate"] == "CPUExecutionProvider" and config["model"] == str(prefix / "models" / model.name)
    assert (prefix / "models" / model.name).read_bytes() == model.read_bytes()
    # the fleet's trust root (issue 29): copied beside the model, named in the config, shown by roadseg-doctor
    assert config["trust_root"] == str(prefix / "trust-root.json") and config["update_repo"] == REPO_URL
    assert json.loads((prefix / "trust-root.json").read_text())["signed"]["_type"] == "root"
    assert "trust_root   {" in r.stdout and '"version": 1' in r.stdout  # roadseg-doctor --trust-root

    sub = Subscriber(broker.port, "roadseg/ort1/#")
    try:
        run = subprocess.run([str(prefix / "venv" / "bin" / "roadseg-run"), "--config", str(prefix / "roadseg.toml"),
                              "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--mqtt-protocol",
                              "5" if broker.mqtt5 else "3.1.1", "--max-frames", "10", "--publish-interval", "0.25"],
                             capture_output=True, text=True, env=ENV, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert sub.wait_for(lambda m: m[0].endswith("/status") and m[1]["state"] == "offline")
        assert sum(p[1]["frames"] for p in sub.of("/coverage")) == 10
    finally:
        sub.close()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_unit_for_an_installed_venv_is_accepted_by_systemd(onnx_install, tmp_path):
    prefix, model, r = onnx_install
    assert r.returncode == 0, r.stderr[-2000:]
    _, unit, _ = dry_run("--prefix", str(prefix), "--model", str(model), env={})
    (tmp_path / "roadseg.service").write_text(unit)
    check = subprocess.run(["systemd-analyze", "verify", "roadseg.service"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "roadseg.service" not in check.stderr, check.stderr


@pytest.mark.integration
def test_jetson_without_the_tensorrt_provider_installs_no_config(onnx_install, tmp_path):
    prefix, model, r = onnx_install
    assert r.returncode == 0, r.stderr[-2000:]
    before = (prefix / "roadseg.toml").read_text()
    # a Jetson whose ONNX Runtime is PyPI's CPU build (what a wrong index gives): refused, naming what is there
    env = dict(jetson(tmp_path, "R36.4.3"), ROADSEG_ORT_PACKAGE="onnxruntime>=1.18", ROADSEG_ORT_INDEX_URL="")
    bad = install_pi("--venv-only", "--prefix", str(prefix), "--source", "synthetic", "--model", str(model), env=env)
    assert bad.returncode == 4, (bad.stdout + bad.stderr)[-3000:]
    last = bad.stderr.strip().splitlines()[-1]
    assert "has no TensorrtExecutionProvider (available: " in last and "CPUExecutionProvider" in last, last
    assert "onnxruntime-gpu for JetPack 6" in last and "Traceback" not in bad.stderr
    assert (prefix / "roadseg.toml").read_text() == before


# -- issue 33: --help, and an apt failure maps to the documented exit 4 ----------------------------------------

def test_help_prints_the_usage_and_exits_0():
    for flag in ("--help", "-h"):
        r = install_pi(flag, timeout=60)
        assert r.returncode == 0 and not r.stderr, (flag, r.returncode, r.stderr)
        assert "--model PATH" in r.stdout and "--venv-only" in r.stdout and "Exit status: 0 done" in r.stdout
        assert not any(ln.startswith("#") for ln in r.stdout.splitlines())
        assert "ROADSEG_INSTALL_UNAME_M" not in r.stdout  # the tests' own variables are not the user's usage


def test_an_apt_failure_is_exit_4_with_one_line_naming_the_packages(tiny_tflite, tmp_path):
    """apt-get refusing python3-picamera2 (exit 100, as on a system without the Raspberry Pi repository)
    ends the script with its documented exit 4 and one last line naming the package, before any venv."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package python3-picamera2' >&2\nexit 100\n")
    (shim / "apt-get").chmod(0o755)
    prefix = tmp_path / "opt"
    r = install_pi("--venv-only", "--prefix", str(prefix), "--source", "picamera2", "--model", str(tiny_tflite),
                   env={"PATH": f"{shim}:{ENV['PATH']}", "ROADSEG_INSTALL_UNAME_M": "aarch64",
                        "ROADSEG_INSTALL_DPKG_ARCH": "arm64"}, timeout=60)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert last.startswith("install_pi.sh: apt-get could not install python3-picamera2 (exit 100"), last
    assert not (prefix / "venv").exists()  # nothing installed after the failure
    with_fake_python = tmp_path / "bin2"  # a step with no message of its own: the trap names the command
    with_fake_python.mkdir()
    for name in ("python3", "apt-get"):
        (with_fake_python / name).write_text("#!/bin/sh\n" + ("exit 7\n" if name == "apt-get" else
                                             'case "$*" in *"-m venv"*) exit 3 ;; *"import picamera2"*|'
                                             '*"import numpy, cv2"*) exit 0 ;; esac\nexec /usr/bin/python3 "$@"\n'))
        (with_fake_python / name).chmod(0o755)
    r = install_pi("--venv-only", "--prefix", str(prefix), "--source", "synthetic", "--model", str(tiny_tflite),
                   env={"PATH": f"{with_fake_python}:{ENV['PATH']}", "ROADSEG_INSTALL_UNAME_M": "x86_64",
                        "ROADSEG_INSTALL_DPKG_ARCH": "amd64"}, timeout=60)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 4 and "venv" in last and "failed (exit 3" in last and "no service installed" in last, \
        (r.returncode, r.stderr)


# -- issue 29: the vehicle's trust root ------------------------------------------------------------------------

def test_trust_root_and_update_repo_go_into_the_config(tiny_tflite, tmp_path):
    config, _, _ = dry_run("--model", str(tiny_tflite), "--prefix", "/opt/rs", "--trust-root",
                           str(trust_root(tmp_path)), "--update-repo", REPO_URL, env={})
    toml = tomllib.loads(config)
    assert toml["trust_root"] == "/opt/rs/trust-root.json" and toml["update_repo"] == REPO_URL
    config, _, _ = dry_run("--model", str(tiny_tflite), "--trust-root", str(tmp_path / "trust-root.json"), env={})
    assert "update_repo" not in tomllib.loads(config)  # a trust root alone: no repository yet
    assert "trust_root" not in tomllib.loads(dry_run("--model", str(tiny_tflite), env={})[0])


@pytest.mark.parametrize("args, problem", [
    (["--update-repo", REPO_URL], "--update-repo needs --trust-root"),
    (["--trust-root", "/nonexistent/root.json"], "--trust-root /nonexistent/root.json: no such file"),
    (["--trust-root", str(SCRIPT), "--update-repo", "ftp://releases.example/"], "is not an http(s)://"),
    (["--trust-root", str(SCRIPT), "--update-repo", 'https://x.example/"\nfps = 0'], "is not an http(s)://"),
])
def test_trust_root_and_update_repo_are_checked_before_anything_is_installed(args, problem, tiny_tflite, tmp_path):
    prefix = tmp_path / "opt"
    line = one_line_refusal(install_pi("--venv-only", "--prefix", str(prefix), "--model", str(tiny_tflite), *args,
                                       timeout=60))
    assert problem in line and not prefix.exists(), line


@pytest.mark.integration
def test_a_trust_root_that_is_not_tuf_root_metadata_installs_nothing(onnx_install, tmp_path):
    """roadseg-doctor --trust-root checks it in the venv: exit 4, one line, the installed files untouched."""
    prefix, model, r = onnx_install
    assert r.returncode == 0, r.stderr[-2000:]
    before = {p: p.read_bytes() for p in (prefix / "roadseg.toml", prefix / "trust-root.json")}
    bad = tmp_path / "trust-root.json"
    bad.write_text('{"signed": {"_type": "targets"}, "signatures": []}')
    again = install_pi("--venv-only", "--prefix", str(prefix), "--platform", "debian-bookworm", "--source",
                       "synthetic:64x128@40", "--device-id", "ort1", "--delegate", "CPUExecutionProvider",
                       "--model", str(model), "--trust-root", str(bad), "--update-repo", REPO_URL)
    assert again.returncode == 4, (again.stdout + again.stderr)[-3000:]
    assert "roadseg-doctor: trust root:" in again.stderr and "not TUF root metadata" in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("install_pi.sh: the runtime cannot start here")
    assert {p: p.read_bytes() for p in before} == before
