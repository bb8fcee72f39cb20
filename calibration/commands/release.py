r"""roadseg-release: the fleet's signed release repository (TUF), kept on the workstation.

    roadseg-release init --repo REPO --keys KEYS [--root-keys OFFLINE] [--root-count 3 --root-threshold 2]
    roadseg-release add --repo REPO --keys KEYS dist/NAME.tflite [--card NAME.md] [--golden IMG ...]
    roadseg-release timestamp --repo REPO --keys KEYS            # daily: vehicles refuse a stale one
    roadseg-release rotate-key --repo REPO --keys KEYS --root-keys OFFLINE [--role targets]
    roadseg-release rerelease --repo REPO --keys KEYS --of VERSION   # back to an older model, as a new version
    roadseg-release trust-root --repo REPO --out trust-root.json     # what a vehicle is installed with
    roadseg-release list --repo REPO [--json]

REPO is static files (serve it with nginx, S3 or a CDN); KEYS holds the
online keys (targets, snapshot, timestamp) and must not lie inside REPO;
root keys are read only by init and rotate-key (--root-keys: the offline
media). See docs/deploy.md, "Fleet operator: releases and rollouts".
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from edge_runtime.commands import cli

PROG = "roadseg-release"


def _score(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        if not eq or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected NAME=NUMBER, e.g. int8_miou7=0.615") from None


def _hours(text: str) -> float:
    value = float(text)
    if not 0 < value <= 24 * 31:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 744 hours")
    return value


def build_parser() -> argparse.ArgumentParser:
    """roadseg-release's parser (subcommands init, add, timestamp, rotate-key, rerelease, trust-root, list)."""
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=cli.ConventionParser)

    def cmd(name: str, help: str, keys: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help, allow_abbrev=False)
        s.add_argument("--repo", required=True, help="the repository folder (static files)")
        if keys:
            s.add_argument("--keys", required=True, help="folder of the online keys, outside --repo")
        s.add_argument("--json", action="store_true", help="print the result as one JSON object")
        return s

    s = cmd("init", "create an empty repository and its keys")
    s.add_argument("--root-keys", help="folder for the root keys (default --keys): offline media")
    s.add_argument("--root-count", type=int, default=1, help="root keys to create (default 1)")
    s.add_argument("--root-threshold", type=int, default=1, help="root keys that must sign a root (default 1)")
    s = cmd("add", "add a calibrated pair as a new release")
    s.add_argument("model", help="dist/NAME.tflite (or .onnx) with its sidecar NAME.json beside it")
    s.add_argument("--card", help="the model card (Markdown)")
    s.add_argument("--golden", action="append", help="a golden image (repeat; default 3 synthetic "
                                                                 "street scenes)")
    s.add_argument("--version", type=int, help="the release version (default: the latest + 1)")
    s.add_argument("--score", type=_score, action="append", metavar="NAME=VALUE",
                   help="a held-out score (repeat; default: the sidecar's int8 and float accuracy)")
    s.add_argument("--min-runtime", help="the lowest runtime version that runs it (default: this runtime's)")
    s.add_argument("--golden-agreement", type=float, default=None,
                   help="share of golden pixels (0..1) a vehicle must reproduce; default 0.97")
    s = cmd("timestamp", "re-sign the timestamp (run it daily)")
    s.add_argument("--expires-hours", type=_hours, default=24.0, help="its lifetime in hours (default 24)")
    s = cmd("rotate-key", "replace the targets (or snapshot, timestamp) key; needs the root keys")
    s.add_argument("--root-keys", help="folder of the root keys (default --keys)")
    s.add_argument("--role", choices=["targets", "snapshot", "timestamp"], default="targets")
    s = cmd("rerelease", "publish an older release's files as a new version (how the fleet goes back)")
    s.add_argument("--of", dest="of_version", type=int, required=True, help="the release to go back to")
    s = cmd("trust-root", "write the newest root metadata: the trust root vehicles are installed with", keys=False)
    s.add_argument("--out", required=True)
    cmd("list", "list the releases", keys=False)
    return p


def run(args: argparse.Namespace) -> dict:
    """Do the subcommand; returns what it prints. Raises ReleaseRepoError and the model's errors."""
    from calibration.release import ReleaseRepo, describe
    c = args.command
    if c == "init":
        r = ReleaseRepo.init(args.repo, args.keys, args.root_keys, root_count=args.root_count,
                             root_threshold=args.root_threshold)
        return describe(r)
    if c in ("list", "trust-root"):
        r = ReleaseRepo(args.repo, args.repo.parent / ".no-keys-needed")
        if c == "trust-root":
            return {"trust_root": str(r.trust_root(args.out))}
        return describe(r)
    r = ReleaseRepo(args.repo, args.keys, getattr(args, "root_keys", None))
    if c == "add":
        kw = {"golden_agreement": args.golden_agreement} if args.golden_agreement is not None else {}
        if not 0.0 <= kw.get("golden_agreement", 0.5) <= 1.0:
            raise ValueError("--golden-agreement must be between 0 and 1")
        rel = r.add(args.model, card=args.card, golden=args.golden, version=args.version,
                    scores=dict(args.score) if args.score else None, min_runtime=args.min_runtime, **kw)
        return {k: rel[k] for k in ("version", "target", "name", "sha256", "length")}
    if c == "timestamp":
        return {"timestamp_version": r.timestamp(dt.timedelta(hours=args.expires_hours))}
    if c == "rotate-key":
        return {"role": args.role, "keyid": r.rotate_key(args.role), "root_version": r.root().signed.version}
    rel = r.rerelease(args.of_version)
    return {k: rel[k] for k in ("version", "target", "name", "sha256", "length")}


def _text(args: argparse.Namespace, out: dict) -> str:
    if args.command in ("init", "list"):
        lines = [f"repository {args.repo}: root version {out['root_version']}, timestamp expires "
                 f"{out['timestamp_expires']}"]
        lines += [f"  release {r['version']}: {r['target']} ({r['length']} bytes, sha256 {r['sha256'][:12]})"
                  for r in out["releases"]]
        return "\n".join(lines)
    if args.command in ("add", "rerelease"):
        return f"release {out['version']}: {out['target']} ({out['length']} bytes, sha256 {out['sha256'][:12]})"
    if args.command == "rotate-key":
        return (f"new {out['role']} key {out['keyid'][:12]} (root version {out['root_version']}); the old key is in "
                f"{args.keys / 'retired'}: destroy it once every vehicle has the new root")
    return ", ".join(f"{k} {v}" for k, v in out.items())


def main(argv: list[str] | None = None) -> int:
    """roadseg-release; exit 0, or 2 with one line."""
    args = build_parser().parse_args(argv)
    for name in ("repo", "keys", "root_keys", "model", "card", "out"):  # plain strings on the command line
        if getattr(args, name, None) is not None:
            setattr(args, name, Path(getattr(args, name)))
    if getattr(args, "golden", None):
        args.golden = [Path(g) for g in args.golden]

    def body():
        out = run(args)
        print(json.dumps(out, sort_keys=True) if args.json else _text(args, out))
    return cli.run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
