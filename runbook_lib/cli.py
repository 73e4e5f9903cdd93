"""The command line: ``python -m runbook_lib <command>``.

- ``run -f FILE [--set k.path=v] [--from S] [--to S] [--only S,…]``: run the chain into a record;
- ``resume RECORD_DIR``: continue a record from its failed or unfinished stage;
- ``plan -f FILE``: validate and show what each stage would create or change, creating nothing;
- ``seal --cert CERT.pem --namespace NS --name NAME``: seal a value read on standard input;
- ``sandbox up|status|down``: the local sandbox.

Exit codes: 0 done, 2 bad parameters or usage, 3 a stage failed or was held at a gate, 4 any
other runbook error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runbook_lib.errors import ParameterError, RunbookError


def _overrides(pairs: list[str] | None) -> list[dict]:
    from runbook_lib.parameters import parse_override

    return [parse_override(p) for p in pairs or []]


def _cmd_run(args) -> int:
    from runbook_lib import chain

    selection = chain.Selection(
        only=args.only.split(",") if args.only else None, first=args.first, last=args.last
    )
    chain.run(args.file, _overrides(args.set), selection, Path(args.records_dir),
              args.cell_timeout)
    return 0


def _cmd_resume(args) -> int:
    from runbook_lib import chain

    chain.resume(Path(args.record_dir), args.cell_timeout)
    return 0


def _cmd_plan(args) -> int:
    from runbook_lib import plan

    print(plan.render(args.file, _overrides(args.set)))
    return 0


def _cmd_seal(args) -> int:
    from runbook_lib import sealing

    value = sys.stdin.buffer.read()
    if value.endswith(b"\n") and not args.keep_newline:
        value = value[:-1]
    print(sealing.seal_cli(Path(args.cert), args.namespace, args.name, args.scope, value))
    return 0


def _cmd_sandbox(args) -> int:
    from runbook_lib import sandbox

    if args.action == "up":
        info = sandbox.up()
        for key, value in sandbox.env(info).items():
            if key in ("KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
                print(f"export {key}={value}")
        for line in info.describe():
            print(f"# {line}")
    elif args.action == "status":
        info = sandbox.status()
        if info is None:
            print("The sandbox is not running.")
            return 1
        for line in info.describe():
            print(line)
    else:
        sandbox.down()
        print("The sandbox is stopped.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runbook_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the stage notebooks into a new record")
    run.add_argument("-f", "--file", required=True, help="parameters file (over base.yaml)")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override")
    run.add_argument("--from", dest="first", metavar="STAGE")
    run.add_argument("--to", dest="last", metavar="STAGE")
    run.add_argument("--only", metavar="STAGE[,STAGE]")
    run.add_argument("--records-dir", default=str(Path("records")))
    run.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell")
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="continue a record from its failed stage")
    resume.add_argument("record_dir")
    resume.add_argument("--cell-timeout", type=float, default=None)
    resume.set_defaults(func=_cmd_resume)

    plan = sub.add_parser("plan", help="validate and show what would be done")
    plan.add_argument("-f", "--file", required=True)
    plan.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    plan.set_defaults(func=_cmd_plan)

    seal = sub.add_parser("seal", help="seal a value read on standard input")
    seal.add_argument("--cert", required=True, help="the controller's certificate (PEM)")
    seal.add_argument("--namespace", required=True)
    seal.add_argument("--name", required=True)
    seal.add_argument("--scope", default="strict",
                      choices=["strict", "namespace-wide", "cluster-wide"])
    seal.add_argument("--keep-newline", action="store_true",
                      help="keep a trailing newline of the input (dropped by default)")
    seal.set_defaults(func=_cmd_seal)

    box = sub.add_parser("sandbox", help="start, inspect or stop the local sandbox")
    box.add_argument("action", choices=["up", "status", "down"])
    box.set_defaults(func=_cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunbookError as exc:
        from runbook_lib.chain import StageFailed

        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "hint", ""):
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 3 if isinstance(exc, StageFailed) else 4
