"""The fleet's release repository (issue 29): a TUF repository of calibrated
models, kept on the workstation with python-tuf's Metadata API.

Layout of ``REPO`` (static files: serve it with any web server, S3 bucket or CDN)::

    REPO/metadata/1.root.json, 2.root.json ...   every root version (clients walk them in order)
    REPO/metadata/root.json                       the newest root
    REPO/metadata/N.targets.json, N.snapshot.json consistent snapshots
    REPO/metadata/timestamp.json                  the only file fetched unversioned
    REPO/targets/releases/<version>/<sha256>.<file>

Roles and keys (Ed25519, PEM PKCS#8, mode 0600, each in ``KEYS``, never in
``REPO``: :class:`ReleaseRepo` refuses a key folder inside the repository):

========== =============================== =========================================
role       key file                         expiry (default)
========== =============================== =========================================
root       ``ROOT_KEYS/root-<i>.pem``       365 days; threshold of N keys, kept offline
targets    ``KEYS/targets.pem``             90 days (signs the releases)
snapshot   ``KEYS/snapshot.pem``            30 days
timestamp  ``KEYS/timestamp.pem``           1 day: re-sign it daily (``timestamp``)
========== =============================== =========================================

A release is the model (``.tflite`` or ``.onnx``), its sidecar, its model
card (optional) and ``golden.npz``: a few small frames with the class maps
that this workstation's LiteRT (edge_runtime's DeviceSegmenter, the code the
vehicle runs) gave. The model's target carries
:class:`edge_runtime.contract.release.ReleaseInfo` in ``custom.roadseg``.
Versions only grow. Every file is written atomically, targets first and
``timestamp.json`` last, so a crash mid-way leaves the repository as it was
for clients.

Errors: :class:`ReleaseRepoError` (ValueError) for anything the operator gave
that cannot be used, one line each.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.contract import release as contract

ROLES = ("root", "targets", "snapshot", "timestamp")
#: default lifetime of each role's metadata
EXPIRY = {"root": dt.timedelta(days=365), "targets": dt.timedelta(days=90), "snapshot": dt.timedelta(days=30),
          "timestamp": dt.timedelta(days=1)}
#: a private key file is a few hundred bytes
MAX_KEY_BYTES = 16 * 1024
#: where the vehicle reads each release's files
RELEASES = "releases"
#: golden frames: how many, and their side at most (they are stored at the model's input size)
GOLDEN_FRAMES = 3
#: share of golden pixels the vehicle must reproduce unless ``add`` is told otherwise (the aarch64 check of
#: the shipped model agreed on 99.2% of pixels with x86; a little margin for other CPUs)
GOLDEN_AGREEMENT = 0.97
#: the largest model file the repository accepts, in bytes
MAX_MODEL_BYTES = 512 << 20


class ReleaseRepoError(ValueError):
    """A repository, key folder, model or option that cannot be used (one line)."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _write_key(path: Path, pem: bytes) -> None:
    from edge_runtime.atomic import durable_write
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    durable_write(path, pem, mode=0o600)  # owner-only from its first byte


def load_signer(path: Path):
    """A ``securesystemslib`` CryptoSigner from a PEM PKCS#8 private key file (size checked first).
    Raises ReleaseRepoError naming the file (never its content)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner
    from edge_runtime.atomic import read_small_file
    try:  # a regular file, size first: a FIFO, a device or a huge file is refused before a read
        data = read_small_file(path, MAX_KEY_BYTES, "key")
    except ValueError as e:
        raise ReleaseRepoError(str(e)) from None
    try:
        return CryptoSigner(load_pem_private_key(data, None))
    except (ValueError, TypeError) as e:
        raise ReleaseRepoError(f"key {path} is not an unencrypted PEM private key ({type(e).__name__})") from None


def _new_signer():
    from securesystemslib.signer import CryptoSigner
    return CryptoSigner.generate_ed25519()


class ReleaseRepo:
    """A release repository at ``repo`` whose online keys (targets, snapshot,
    timestamp) are in ``keys`` and root keys in ``root_keys`` (default: ``keys``;
    only :meth:`init` and :meth:`rotate_key` read them). Raises ReleaseRepoError
    when a key folder lies inside ``repo`` (the repository is published)."""

    def __init__(self, repo: str | Path, keys: str | Path, root_keys: str | Path | None = None):
        self.repo, self.keys = Path(repo), Path(keys)
        self.root_keys = Path(root_keys) if root_keys is not None else self.keys
        for name, folder in (("key folder", self.keys), ("root key folder", self.root_keys)):
            if _inside(folder, self.repo):
                raise ReleaseRepoError(f"{name} {folder} is inside the repository {self.repo}: private keys must "
                                       "never be published; keep them elsewhere")
        self.metadata, self.targets_dir = self.repo / "metadata", self.repo / "targets"

    # -- reading ------------------------------------------------------------------------------------
    def _load(self, name: str):
        from tuf.api.metadata import Metadata
        path = self.metadata / f"{name}.json"
        if not path.is_file():
            raise ReleaseRepoError(f"{self.repo} is not a release repository ({path.name} missing): run init")
        return Metadata.from_file(str(path))

    def root(self):
        """The newest root metadata (tuf.api.metadata.Metadata[Root])."""
        return self._load("root")

    def current(self) -> tuple:
        """``(timestamp, snapshot, targets)`` metadata as clients see them now."""
        ts = self._load("timestamp")
        snap = self._load(f"{ts.signed.snapshot_meta.version}.snapshot")
        targets = self._load(f"{snap.signed.meta['targets.json'].version}.targets")
        return ts, snap, targets

    def releases(self) -> list[dict]:
        """Every release, oldest first: ``{"version", "target", "name", "sha256", "length", "info"}``
        (``info``: the :class:`~edge_runtime.contract.release.ReleaseInfo` dict)."""
        _, _, targets = self.current()
        out = []
        for path, tf in targets.signed.targets.items():
            custom = tf.custom
            if isinstance(custom, dict) and contract.CUSTOM_KEY in custom:
                info = contract.parse_release_info(custom)
                out.append({"version": info.version, "target": path, "name": info.name,
                            "sha256": tf.hashes.get("sha256"), "length": tf.length,
                            "info": info.model_dump(mode="json", by_alias=True)})
        return sorted(out, key=lambda r: r["version"])

    def latest_version(self) -> int | None:
        """The highest release version, None when there is none."""
        rel = self.releases()
        return rel[-1]["version"] if rel else None

    # -- writing ------------------------------------------------------------------------------------
    def _write(self, md, name: str) -> None:
        from tuf.api.serialization.json import JSONSerializer
        atomic.write_bytes(self.metadata / f"{name}.json", md.to_bytes(JSONSerializer(compact=False)))

    def _sign(self, md, role: str, signers: list | None = None) -> None:
        md.signatures.clear()
        for signer in signers or [self._signer(role)]:
            md.sign(signer, append=True)

    def _signer(self, role: str):
        return load_signer(self.keys / f"{role}.pem")

    def _root_signers(self, root) -> list:
        """Root keys from ``root_keys`` that the root role lists, at least its threshold."""
        role = root.signed.roles["root"]
        found = []
        for path in sorted(self.root_keys.glob("root-*.pem")):
            signer = load_signer(path)
            if signer.public_key.keyid in role.keyids:
                found.append(signer)
        if len(found) < role.threshold:
            raise ReleaseRepoError(f"{len(found)} of the root's keys found in {self.root_keys} (root-*.pem), its "
                                   f"threshold is {role.threshold}: bring the offline root keys")
        return found

    @classmethod
    def init(cls, repo: str | Path, keys: str | Path, root_keys: str | Path | None = None, *,
             root_count: int = 1, root_threshold: int = 1, expiry: dict[str, dt.timedelta] | None = None
             ) -> ReleaseRepo:
        """Create an empty repository: new keys (``root_count`` root keys, of which
        ``root_threshold`` must sign a root), version 1 of every role. Refuses a
        repository or a key folder that already holds them. Returns the repo."""
        from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
        self = cls(repo, keys, root_keys)
        if not 1 <= root_threshold <= root_count <= 16:
            raise ReleaseRepoError(f"root threshold {root_threshold} of {root_count} keys: need 1 <= threshold <= "
                                   "keys <= 16")
        if (self.metadata / "root.json").exists():
            raise ReleaseRepoError(f"{self.repo} already holds a repository (metadata/root.json)")
        for role in ROLES[1:]:
            if (self.keys / f"{role}.pem").exists():
                raise ReleaseRepoError(f"{self.keys / f'{role}.pem'} exists: init never overwrites a key")
        if any(self.root_keys.glob("root-*.pem")):
            raise ReleaseRepoError(f"{self.root_keys} already holds root keys: init never overwrites a key")
        life = {**EXPIRY, **(expiry or {})}
        now = _utcnow()
        root = Metadata(Root(expires=now + life["root"], consistent_snapshot=True))
        root_signers = [_new_signer() for _ in range(root_count)]
        for i, s in enumerate(root_signers, 1):
            root.signed.add_key(s.public_key, "root")
            _write_key(self.root_keys / f"root-{i}.pem", s.private_bytes)
        root.signed.roles["root"].threshold = root_threshold
        for role in ROLES[1:]:
            s = _new_signer()
            root.signed.add_key(s.public_key, role)
            _write_key(self.keys / f"{role}.pem", s.private_bytes)
        self._sign(root, "root", root_signers)
        self._write(root, "1.root")
        self._write(root, "root")
        targets = Metadata(Targets(expires=now + life["targets"]))
        self._sign(targets, "targets")
        self._write(targets, "1.targets")
        snap = Metadata(Snapshot(expires=now + life["snapshot"]))
        self._sign(snap, "snapshot")
        self._write(snap, "1.snapshot")
        ts = Metadata(Timestamp(expires=now + life["timestamp"], snapshot_meta=MetaFile(version=1)))
        self._publish_timestamp(ts, snap, life["timestamp"], bump=False)
        return self

    def _publish_targets(self, targets, life: dt.timedelta | None = None) -> None:
        """Bump, sign and write targets, then snapshot and timestamp (timestamp.json last)."""
        _, snap_now, _ = self.current()
        now = _utcnow()
        targets.signed.version += 1
        targets.signed.expires = now + (life or EXPIRY["targets"])
        self._sign(targets, "targets")
        self._write(targets, f"{targets.signed.version}.targets")
        snap = snap_now
        snap.signed.version += 1
        snap.signed.expires = now + EXPIRY["snapshot"]
        snap.signed.meta["targets.json"] = self._metafile(targets)
        self._sign(snap, "snapshot")
        self._write(snap, f"{snap.signed.version}.snapshot")
        self._publish_timestamp(self._load("timestamp"), snap, EXPIRY["timestamp"])

    @staticmethod
    def _metafile(md):
        from tuf.api.metadata import MetaFile
        from tuf.api.serialization.json import JSONSerializer
        data = md.to_bytes(JSONSerializer(compact=False))
        return MetaFile(version=md.signed.version, length=len(data),
                        hashes={"sha256": hashlib.sha256(data).hexdigest()})

    def _publish_timestamp(self, ts, snap, life: dt.timedelta, bump: bool = True) -> None:
        if bump:
            ts.signed.version += 1
        ts.signed.expires = _utcnow() + life
        ts.signed.snapshot_meta = self._metafile(snap)
        self._sign(ts, "timestamp")
        self._write(ts, "timestamp")

    def timestamp(self, expires_in: dt.timedelta = EXPIRY["timestamp"]) -> int:
        """Re-sign the timestamp (run it daily: vehicles refuse an expired one, the
        freeze protection); ``expires_in`` its lifetime. Returns its version."""
        _, snap, _ = self.current()
        ts = self._load("timestamp")
        self._publish_timestamp(ts, snap, expires_in)
        return ts.signed.version

    def add(self, model: str | Path, *, card: str | Path | None = None, golden: list[str | Path] | None = None,
            version: int | None = None, scores: dict[str, float] | None = None, min_runtime: str | None = None,
            golden_agreement: float = GOLDEN_AGREEMENT) -> dict:
        """Add the calibrated pair ``model`` (+ its sidecar ``.json`` beside it, + ``card``)
        as a new release: ``version`` (default: the latest + 1; 0 for the first) must be
        higher than every release's. Golden frames: ``golden`` images (default
        :data:`GOLDEN_FRAMES` synthetic street scenes) at the model's input size, with
        the class maps edge_runtime's DeviceSegmenter gives here. ``scores``: held-out
        scores (default: the sidecar's int8 accuracy); ``min_runtime``: the lowest
        runtime version (default this edge_runtime's). Returns the release (as
        :meth:`releases` lists it). Raises ReleaseRepoError, SidecarError, ModelError."""
        from edge_runtime import __version__ as runtime_version
        from edge_runtime.contract.sidecar import read_sidecar, sidecar_path
        from edge_runtime.model.segmenter import DeviceSegmenter
        model = Path(model)
        if not model.is_file() or model.suffix not in (".tflite", ".onnx"):
            raise ReleaseRepoError(f"{model}: not a .tflite or .onnx file")
        if model.stat().st_size > MAX_MODEL_BYTES:
            raise ReleaseRepoError(f"{model}: {model.stat().st_size} bytes, more than {MAX_MODEL_BYTES}")
        sidecar = read_sidecar(model)  # validated, sha256 checked
        if sidecar is None:
            raise ReleaseRepoError(f"{model}: no sidecar {sidecar_path(model).name} beside it: roadseg-calibrate "
                                   "writes the pair")
        latest = self.latest_version()
        if version is None:
            version = 0 if latest is None else latest + 1
        if latest is not None and version <= latest:
            raise ReleaseRepoError(f"version {version} is not higher than the latest release {latest}: versions "
                                   "only grow")
        if card is not None and not Path(card).is_file():
            raise ReleaseRepoError(f"model card {card} not found")
        seg = DeviceSegmenter(model, threads=1)
        frames, classes = golden_frames(seg, golden)
        prefix = f"{RELEASES}/{version}"
        name = sidecar["name"]
        files = {f"{prefix}/{model.name}": model.read_bytes(),
                 f"{prefix}/{model.stem}.json": sidecar_path(model).read_bytes(),
                 f"{prefix}/golden.npz": contract.golden_bytes(frames, classes)}
        if card is not None:
            files[f"{prefix}/{model.stem}.md"] = Path(card).read_bytes()
        info = contract.release_info(
            version=version, name=name, sidecar=f"{prefix}/{model.stem}.json",
            card=f"{prefix}/{model.stem}.md" if card is not None else None, golden=f"{prefix}/golden.npz",
            input=sidecar["input"], scores=scores if scores is not None else heldout_scores(sidecar),
            min_runtime=min_runtime or runtime_version, golden_agreement=float(golden_agreement),
            created=_utcnow().isoformat())
        return self._add_files(files, f"{prefix}/{model.name}", info)

    def rerelease(self, of_version: int, version: int | None = None) -> dict:
        """A new release (``version``, default latest + 1) with the files of release
        ``of_version``: how the fleet goes back to an older model, since vehicles never
        run a lower version than theirs. Returns the release. Raises ReleaseRepoError."""
        old = {r["version"]: r for r in self.releases()}.get(of_version)
        if old is None:
            raise ReleaseRepoError(f"no release {of_version} in {self.repo}")
        latest = self.latest_version()
        version = latest + 1 if version is None else version
        if version <= latest:
            raise ReleaseRepoError(f"version {version} is not higher than the latest release {latest}")
        _, _, targets = self.current()
        info = dict(old["info"])
        src_prefix, prefix = f"{RELEASES}/{of_version}", f"{RELEASES}/{version}"
        moved = {}
        for key in ("sidecar", "card", "golden"):
            if info.get(key):
                moved[info[key]] = info[key].replace(src_prefix, prefix, 1)
                info[key] = moved[info[key]]
        moved[old["target"]] = old["target"].replace(src_prefix, prefix, 1)
        files = {new: self._target_bytes(targets, path) for path, new in moved.items()}
        info.update(version=version, created=_utcnow().isoformat())
        info.pop("schema", None)
        return self._add_files(files, moved[old["target"]], contract.release_info(**info))

    def _target_bytes(self, targets, path: str) -> bytes:
        tf = targets.signed.targets[path]
        data = self._target_file(path, tf.hashes["sha256"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != tf.hashes["sha256"]:
            raise ReleaseRepoError(f"{path} in {self.targets_dir} does not match its signed hash")
        return data

    def _target_file(self, path: str, sha256: str) -> Path:
        folder, _, base = path.rpartition("/")
        return self.targets_dir / folder / f"{sha256}.{base}"

    def _add_files(self, files: dict[str, bytes], model_target: str, info: dict) -> dict:
        from tuf.api.metadata import TargetFile
        _, _, targets = self.current()
        for path, data in files.items():  # files first: a crash leaves unreferenced files, never a dangling target
            digest = hashlib.sha256(data).hexdigest()
            atomic.write_bytes(self._target_file(path, digest), data)
            custom = {"custom": {contract.CUSTOM_KEY: info}} if path == model_target else {}
            targets.signed.targets[path] = TargetFile(len(data), {"sha256": digest}, path, custom)
        self._publish_targets(targets)
        return {r["target"]: r for r in self.releases()}[model_target]

    def rotate_key(self, role: str = "targets", retire_to: str | Path | None = None) -> str:
        """Replace ``role``'s key (targets, snapshot or timestamp): a new root version
        (signed by the offline root keys) revokes the old key and lists the new; then
        the role's metadata is re-signed with the new key. Vehicles follow the root
        chain and refuse the old key from then on. The old key file moves to
        ``retire_to`` (default ``KEYS/retired/``) for the operator to destroy. Returns
        the new key id."""
        if role not in ROLES[1:]:
            raise ReleaseRepoError(f"role {role!r}: rotate-key replaces the targets, snapshot or timestamp key "
                                   "(a root key is replaced by signing a new root with the old and new keys)")
        root = self.root()
        root_signers = self._root_signers(root)  # before anything changes: the offline keys must be here
        new = _new_signer()
        old_ids = list(root.signed.roles[role].keyids)
        for keyid in old_ids:
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(new.public_key, role)
        root.signed.version += 1
        root.signed.expires = _utcnow() + EXPIRY["root"]
        self._sign(root, "root", root_signers)
        # the new key first: a crash after the root is written leaves a key that the root lists
        old_file = self.keys / f"{role}.pem"
        retired = Path(retire_to) if retire_to is not None else self.keys / "retired"
        if old_file.exists():
            _write_key(retired / f"{role}-{'-'.join(k[:12] for k in old_ids)}.pem", old_file.read_bytes())
        _write_key(old_file, new.private_bytes)
        self._write(root, f"{root.signed.version}.root")
        self._write(root, "root")
        ts, snap, targets = self.current()
        if role == "targets":
            self._publish_targets(targets)
        elif role == "snapshot":
            snap.signed.version += 1
            snap.signed.expires = _utcnow() + EXPIRY["snapshot"]
            self._sign(snap, "snapshot")
            self._write(snap, f"{snap.signed.version}.snapshot")
            self._publish_timestamp(ts, snap, EXPIRY["timestamp"])
        else:
            self._publish_timestamp(ts, snap, EXPIRY["timestamp"])
        return new.public_key.keyid

    def trust_root(self, out: str | Path) -> Path:
        """Copy the newest root metadata to ``out``: the trust root a vehicle is installed with
        (``roadseg-run --trust-root``)."""
        out = Path(out)
        atomic.write_bytes(out, (self.metadata / "root.json").read_bytes())
        return out


def heldout_scores(sidecar: dict) -> dict[str, float]:
    """Held-out scores from the sidecar's ``accuracy`` block: ``int8_<metric>`` and
    ``float_<metric>`` for each number of its ``quantized`` and ``float`` blocks."""
    acc = sidecar.get("accuracy") or {}
    out = {}
    for block, prefix in (("quantized", "int8"), ("float", "float")):
        for k, v in (acc.get(block) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                out[f"{prefix}_{k}"[:40]] = float(v)
    return out


def golden_frames(seg, images: list[str | Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``seg``'s input size (uint8 [N,H,W,3] RGB) and the class maps ``seg``
    gives for them (uint8 [N,h,w]): from ``images`` (read with OpenCV) or, when None,
    :data:`GOLDEN_FRAMES` synthetic street scenes. Raises ReleaseRepoError for an
    image that cannot be read."""
    import cv2

    from edge_runtime.contract.preprocessing import preprocess
    from edge_runtime.eval.synthetic import synthetic_scene
    h, w = seg.input_size
    frames = []
    if images:
        for path in images:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ReleaseRepoError(f"golden image {path} cannot be read as an image")
            frames.append(preprocess(bgr, (h, w), "bgr"))
    else:
        frames = [preprocess(synthetic_scene(seed, max(h, 64), max(w, 64))[0], (h, w), "rgb")
                  for seed in range(GOLDEN_FRAMES)]
    frames = np.stack([np.ascontiguousarray(f, np.uint8) for f in frames])
    classes = np.stack([seg.segment(f, "rgb").copy() for f in frames])
    return frames, classes


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a repository folder (tests, mirrors): metadata and targets, as they are."""
    shutil.copytree(src, dst, dirs_exist_ok=True)


def describe(repo: ReleaseRepo) -> dict:
    """The repository as JSON-ready data: root version and key ids per role, timestamp expiry, releases."""
    root = repo.root().signed
    ts, _, _ = repo.current()
    return {"root_version": root.version,
            "roles": {r: {"keyids": list(root.roles[r].keyids), "threshold": root.roles[r].threshold} for r in ROLES},
            "timestamp_expires": ts.signed.expires.isoformat(),
            "releases": [{k: r[k] for k in ("version", "target", "name", "sha256", "length")} for r in repo.releases()]}


def dumps(obj) -> str:
    """JSON for the command's ``--json``."""
    return json.dumps(obj, indent=2, sort_keys=True)
