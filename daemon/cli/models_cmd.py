"""`sarai models list|ps|load|unload|pin|pull`.

These act in this process: `load` loads and reports what the model took, then the process
exits. The logic lives in ModelRegistry (load, unload, pin, resident) so a running daemon can
serve the same requests over its control socket.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sarai.daemon.app import Context
    from sarai.models.registry import ModelRegistry
    from sarai.models.resident import ResidentInfo
    from sarai.models.settings import Tier

# Spelt out (a test keeps them equal to models.settings.Tier and models.pull.CATALOGUE) so
# that `sarai models ps` against a running daemon does not import pydantic or httpx to parse
# its arguments.
TIERS = ["omni_fast", "omni_quality", "expert", "tiny"]
PULLABLE = {"qwen2.5-omni-3b": "omni_fast", "qwen2.5-omni-7b": "omni_quality",
            "lfm2-1.2b": "tiny"}
MIB = 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="find, install, load and inspect models",
                       description="Find, install, load and inspect the models behind the tiers.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = msub.add_parser("list", help="every GGUF model found on this machine, and its tier",
                         description="GGUF files in the models folder, models.search_dirs, the "
                         "Hugging Face cache and Ollama's store, read from their headers.")
    ls.add_argument("--json", action="store_true", help="one JSON object")
    ls.set_defaults(func=_list)

    ps = msub.add_parser("ps", help="what is resident now: RAM, idle time, expiry, policy",
                         description="What is resident: models, projectors, speech recognition "
                         "and the voice, with RAM, idle time, expiry and policy. Asks the running "
                         "SARAi; when none runs, what this process would hold.")
    ps.add_argument("--json", action="store_true", help="one JSON object")
    ps.set_defaults(func=_ps)

    ld = msub.add_parser("load", help="load a tier's model and show what it took",
                         description="Load a tier's model within the RAM budget (in the "
                         "running SARAi, else in this process) and show what it took.")
    ld.add_argument("tier", choices=TIERS)
    ld.add_argument("--long", action="store_true", help="with the tier's long context (n_ctx_long)")
    ld.add_argument("--json", action="store_true", help="one JSON object")
    ld.set_defaults(func=_load)

    ul = msub.add_parser("unload", help="unload a tier's model",
                         description="Unload a tier's model in the running SARAi (once the "
                         "reply in progress, if any, is over). A pinned model stays unless "
                         "--force.")
    ul.add_argument("tier", choices=TIERS)
    ul.add_argument("--force", action="store_true", help="even if it is pinned")
    ul.set_defaults(func=_unload)

    pn = msub.add_parser("pin", help="keep a tier's model resident",
                         description="Pin a tier's model (loading it first) so it stays "
                         "resident, or unpin it with --off; --save also writes it into your "
                         "configuration file.")
    pn.add_argument("tier", choices=TIERS)
    pn.add_argument("--off", action="store_true", help="unpin instead")
    pn.add_argument("--save", action="store_true",
                    help="also write the residency into your configuration file")
    pn.set_defaults(func=_pin)

    pl = msub.add_parser(
        "pull", help="download a production model and bind it to its tier",
        description="Download a model file (resuming an interrupted download), check its "
        "SHA-256 and set it as its tier's model in your configuration file. Known: "
        + ", ".join(f"{n} ({t})" for n, t in PULLABLE.items())
        + "; or any org/repo/file.gguf with --tier. $SARAI_PULL_URL changes the server.",
    )
    pl.add_argument("name", help="catalogue name or org/repo/file.gguf")
    pl.add_argument("--tier", choices=TIERS, help="bind to this tier instead of the usual one")
    pl.add_argument("--sha256", help="expected SHA-256 when the server announces none")
    pl.add_argument("--no-bind", action="store_true", help="download only")
    pl.set_defaults(func=_pull)


def build_registry(ctx: Context) -> ModelRegistry:
    from sarai.models.registry import ModelRegistry

    return ModelRegistry(ctx.config.models, ctx.models_dir, residency=ctx.config.residency)


def _tier_map(reg: ModelRegistry) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Which tiers each file serves (by real path), and how every tier resolved."""
    from sarai.models.errors import ModelError
    from sarai.models.settings import Tier

    serves: dict[str, list[str]] = {}
    tiers: dict[str, Any] = {}
    for t in Tier:
        try:
            r = reg.resolve(t)
        except ModelError as exc:
            tiers[t.value] = {"error": str(exc)}
            continue
        tiers[t.value] = {"model": r.model, "backend": r.backend, "starter": r.starter,
                          "path": str(r.path) if r.path else None, "host": r.host,
                          "why": r.why or None}
        for p, role in ((r.path, ""), (r.mmproj, " (mmproj)")):
            if p is not None:
                serves.setdefault(str(p.resolve()), []).append(t.value + role)
    return serves, tiers


def _mb(n: float | None) -> str:
    return "-" if n is None else (f"{n / 1024:.1f} GB" if n >= 1024 else f"{n:.0f} MB")


def _list(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.models.discovery import describe

    reg = build_registry(ctx)
    serves, tiers = _tier_map(reg)
    rows = []
    for f in reg.discovered():
        info, err = describe(f)
        row: dict[str, Any] = {
            "file": f.path.name, "path": str(f.path), "source": f.source, "label": f.label,
            "size_mb": round(f.path.stat().st_size / MIB, 1),
            "tiers": serves.get(str(f.path.resolve()), []),
        }
        if info is None:
            row["error"] = err
        else:
            row.update(kind="mmproj" if info.is_projector else "model",
                       architecture=info.architecture, name=info.name,
                       parameters=info.parameters, parameters_label=info.parameters_label,
                       quantization=info.quantization, context_length=info.context_length)
        rows.append(row)
    if args.json:
        print(json.dumps({"models": rows, "tiers": tiers}, indent=2))
        return 0
    if not rows:
        print("No GGUF models found. Run 'sarai setup' or 'sarai models pull NAME'.")
    else:
        print(f"{'MODEL':44} {'SOURCE':11} {'SIZE':>8} {'ARCH':10} {'PARAMS':>7} "
              f"{'QUANT':8} {'CTX':>7}  TIERS")
        for r in rows:
            name = r["label"] if r["source"] == "ollama" else r["file"]
            if "error" in r:
                print(f"{name[:44]:44} {r['source']:11} {_mb(r['size_mb']):>8}  "
                      f"unreadable: {r['error']}")
                continue
            print(f"{name[:44]:44} {r['source']:11} {_mb(r['size_mb']):>8} "
                  f"{r['architecture'][:10]:10} {r['parameters_label']:>7} "
                  f"{r['quantization'][:8]:8} {r['context_length'] or '-':>7}  "
                  f"{', '.join(r['tiers']) or '-'}")
    print("\nTiers:")
    for t, r in tiers.items():
        if "error" in r:
            print(f"  {t:13} unavailable: {r['error']}")
            continue
        where = f" at {r['host']}" if r["host"] else ""
        extra = f"  (starter stand-in: {r['why']})" if r["starter"] else ""
        print(f"  {t:13} {r['model']} [{r['backend']}{where}]{extra}")
    return 0


def ps_table(infos: list[ResidentInfo], budget_mb: float) -> str:
    """The `models ps` table, for this process or a daemon's snapshot."""
    lines = []
    if not infos:
        lines.append("Nothing is resident.")
    else:
        lines.append(f"{'MODEL':34} {'KIND':6} {'TIERS':22} {'STATE':9} {'POLICY':9} "
                     f"{'RAM':>8} {'ANON':>8} {'FILE':>8} {'IDLE':>6} {'EXPIRES':>8}")
        for i in infos:
            policy = "pinned" if i.pinned else str(i.policy)
            idle = f"{i.idle_s:.0f}s" if i.idle_s is not None else "-"
            exp = f"{i.expires_in_s:.0f}s" if i.expires_in_s is not None else "-"
            lines.append(
                f"{i.name[:34]:34} {i.kind:6} {', '.join(i.tiers)[:22] or '-':22} {i.state:9} "
                f"{policy:9} "
                f"{_mb(i.charged_mb):>8} {_mb(i.anon_mb):>8} {_mb(i.file_mb):>8} {idle:>6} "
                f"{exp:>8}" + (f"  {i.detail}" if i.external else "")
            )
    used = sum(i.charged_mb for i in infos)
    lines.append(f"Budget: {_mb(used)} of {_mb(budget_mb)} in use.")
    return "\n".join(lines)


def _ps_payload(reg: ModelRegistry) -> dict[str, Any]:
    from sarai.models.memory import sample

    infos = reg.resident()
    me = sample()
    return {
        "resident": [i.as_dict() for i in infos],
        "budget_mb": reg.residency.budget_mb,
        "used_mb": round(sum(i.charged_mb for i in infos), 1),
        "process": {"anon_mb": round(me.anon_mb, 1), "file_mb": round(me.file_mb, 1)},
    }


def _daemon():
    """The running daemon's connection, or None (then these commands act in this process)."""
    from sarai.daemon.cli import models_remote

    return models_remote, models_remote.running()


def _ps(args: argparse.Namespace, ctx: Context) -> int:
    remote, conn = _daemon()
    if conn is not None:
        return remote.ps(args, conn)
    reg = build_registry(ctx)
    try:
        if args.json:
            print(json.dumps(_ps_payload(reg), indent=2))
        else:
            print(ps_table(reg.resident(), reg.residency.budget_mb))
            print("(SARAi is not running: this is what this process holds, plus what "
                  "Ollama holds.)")
    finally:
        reg.close()
    return 0


def _load(args: argparse.Namespace, ctx: Context) -> int:
    remote, conn = _daemon()
    if conn is not None:
        return remote.load(args, conn)
    from sarai.models.settings import Tier

    reg = build_registry(ctx)
    tier = Tier(args.tier)
    try:
        t = time.perf_counter()
        info = reg.load(tier, long_context=args.long)
        took = time.perf_counter() - t
        if args.json:
            print(json.dumps({"load_s": round(took, 3), "loaded": info.as_dict(),
                              **_ps_payload(reg)}, indent=2))
        else:
            print(f"Loaded {info.name} for {tier} in {took:.2f} s: estimated "
                  f"{_mb(info.estimate_mb)}, measured {_mb(info.anon_mb)} anonymous + "
                  f"{_mb(info.file_mb)} file-backed.")
            print(ps_table(reg.resident(), reg.residency.budget_mb))
    finally:
        reg.close()
    return 0


def _unload(args: argparse.Namespace, ctx: Context) -> int:
    remote, conn = _daemon()
    if conn is not None:
        return remote.unload(args, conn)
    from sarai.models.settings import Tier

    reg = build_registry(ctx)
    try:
        gone = reg.unload(Tier(args.tier), force=args.force)
    finally:
        reg.close()
    print(f"Unloaded {args.tier}." if gone else f"{args.tier} is not resident in this process.")
    return 0


def _pin(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.models.settings import Tier

    tier = Tier(args.tier)
    remote, conn = _daemon()
    if conn is not None:
        remote.pin(args, conn)
    else:
        reg = build_registry(ctx)
        try:
            info = reg.pin(tier, not args.off)
            print(f"{info.name} ({tier}) is {'pinned' if info.pinned else 'unpinned'} "
                  "in this process.")
        finally:
            reg.close()
    if args.save:
        residency = "on_demand" if args.off else "pinned"
        _bind(args, ctx, tier, {"residency": residency})
    return 0


def _config_file(args: argparse.Namespace, ctx: Context) -> Path:
    return args.config or ctx.paths.config_file


def _bind(args: argparse.Namespace, ctx: Context, tier: Tier, values: dict[str, Any]) -> None:
    from sarai.daemon.config import ConfigError, load_config
    from sarai.models import binding

    path = _config_file(args, ctx)
    backup = binding.bind_tier(path, tier, values)
    try:
        load_config(path, required=True)
    except ConfigError:
        binding.restore(path, backup)
        raise
    keys = ", ".join(f"{k}: {v}" for k, v in values.items())
    print(f"{path}: models.{tier} set ({keys})")


def _pull(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.models import pull
    from sarai.models.settings import BackendKind, Tier

    item = pull.lookup(args.name, Tier(args.tier) if args.tier else None)
    base = pull.base_url(ctx.config.models.pull_url)
    print(f"Pulling {item.title} from {base} into {ctx.models_dir}", flush=True)
    got: dict[str, Path] = {}
    for f in item.files:
        got[f.role] = pull.download(f, ctx.models_dir, base, sha256=args.sha256,
                                    report=_progress_printer())
    if args.no_bind or item.tier is None:
        if item.tier is None and not args.no_bind:
            print("Not bound to a tier (give --tier to bind it).")
        return 0
    values: dict[str, Any] = {"backend": str(BackendKind.LLAMACPP), "model": got["model"].name}
    if "mmproj" in got:
        values["mmproj"] = got["mmproj"].name
    _bind(args, ctx, item.tier, values)
    return 0


def _progress_printer():
    from sarai.daemon.cli.progress import ByteBar

    bars: dict[str, ByteBar] = {}

    def report(p) -> None:  # a models.pull.Progress
        bar = bars.get(p.file)
        if p.stage == "skip":
            print(f"  {p.file}: already downloaded and verified", flush=True)
        elif p.stage == "verify":
            if bar is not None:
                bar.finish()
            print(f"  {p.file}: checking SHA-256…", file=sys.stderr, flush=True)
        elif p.stage == "done":
            print(f"  {p.file}: {_mb(p.done / MIB)}, sha256 ok", flush=True)
        else:
            if bar is None:
                bar = bars[p.file] = ByteBar(p.file)
                if p.resumed_from:
                    print(f"  {p.file}: resuming at {_mb(p.resumed_from / MIB)}",
                          file=sys.stderr, flush=True)
            bar.update(p.done, p.total, p.rate_bps or None)

    return report
