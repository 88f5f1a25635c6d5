"""`asymptote submit`, `asymptote jobs`, `asymptote stop`: a recipe as a Ray
Job on a running cluster, through the head's dashboard (Ray Jobs API).

Why Ray Jobs rather than `launch --address ray://...`: the driver then runs
on the head, not on the laptop, so a closed laptop or a dropped connection
does not end the run; `launch --address` still works for an interactive run.

The job's runtime_env uploads the working directory (the project, without
.venv, runs, .cache, .git) and its entrypoint is
`python -m rl.cli launch RECIPE k=v ... --run-dir RUN_DIR --resume
--address auto`, so a
job submitted again after a failure continues the same run. RUN_DIR must be
a path every node sees, as the driver runs on the head: shared storage on a
cluster (the default is `runs/<name>` under the submitting directory, made
absolute, which is right when the head is this machine or mounts the same
file system). The recipe must lie inside the working directory (it is read
on the head from the upload). The base-model cache travels the same way:
ASYMPTOTE_CACHE is passed on (default: this project's .cache/asymptote).

Ray's own CLI does the same (`ray job submit --working-dir . -- python -m
rl.cli launch ...`, `ray job list`, `ray job stop ID`); these verbs add the
recipe check before anything is uploaded, the run-dir convention and one-line
errors.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from core.errors import UserError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
EXCLUDES = [".venv/", "runs/", ".cache/", ".git/", "wandb/", "*.egg-info/", "__pycache__/", ".pytest_cache/"]
ROOT = Path(__file__).resolve().parents[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="run a recipe as a Ray Job on a cluster (through its dashboard)")
    p.add_argument("recipe", help="recipe YAML inside the working directory, e.g. recipes/gpu/scalerl.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as for launch")
    _address(p)
    p.add_argument("--run-dir", help="run directory on storage the head sees (default: ./runs/<run.name>, absolute)")
    p.add_argument("--working-dir", default=".", help="directory uploaded as the job's working dir (default .)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return instead of streaming the log")
    p.set_defaults(func=submit)

    p = subparsers.add_parser("jobs", help="list the Ray Jobs on a cluster")
    _address(p)
    p.set_defaults(func=jobs)

    p = subparsers.add_parser("stop", help="stop a Ray Job (SIGTERM, then SIGKILL after Ray's grace period; `resume` continues the run)")
    p.add_argument("job_id", metavar="JOB", help="a job id from `asymptote submit` or `asymptote jobs`")
    _address(p)
    p.set_defaults(func=stop)


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", DEFAULT_ADDRESS),
                   help=f"the head's dashboard, http://HEAD:8265 (default $RAY_API_SERVER_ADDRESS or {DEFAULT_ADDRESS})")


def client(address: str):
    """A JobSubmissionClient, or one line saying why there is none."""
    from rl.ray_address import auth_hint, check_reachable, use_token_if_available

    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: Ray Jobs need the head's dashboard, http://HEAD:8265 "
                        "(HOST:6379 and ray://HOST:10001 are for `launch --address`)")
    check_reachable(address, 8265, "the Ray dashboard (a head started with --include-dashboard true)")
    use_token_if_available()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 - a non-dashboard port, a head without the dashboard
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        if auth_hint(first):
            raise UserError(f"the Ray dashboard at {address} refused this client ({first}){auth_hint(first)}") from None
        raise UserError(f"no Ray dashboard answers at {address} ({first}); Ray Jobs need the head started with "
                        "the dashboard (ray start --head --include-dashboard true, port 8265)") from None


def submit(args: argparse.Namespace) -> int:
    from rl.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # a bad recipe fails here, before any upload
    work = Path(args.working_dir).resolve()
    try:
        rel = Path(args.recipe).resolve().relative_to(work)
    except ValueError:
        raise UserError(f"{args.recipe} is outside the working dir {work}, which is what the job gets; "
                        "move it there or pass --working-dir") from None
    run_dir = Path(args.run_dir or Path("runs") / recipe.run.name).resolve()
    cache = os.environ.get("ASYMPTOTE_CACHE") or str(ROOT / ".cache" / "asymptote")
    entrypoint = " ".join([sys.executable if _same_machine(args.address) else "python", "-m", "rl.cli", "launch",
                           _quote(str(rel)), *map(_quote, args.overrides), "--run-dir", _quote(str(run_dir)),
                           "--resume", "--address", "auto"])  # the job's driver joins the cluster it runs on
    jc = client(args.address)
    job_id = jc.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(work), "excludes": EXCLUDES,
                     "env_vars": {"ASYMPTOTE_CACHE": cache, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
                                  "TOKENIZERS_PARALLELISM": "false"}},
        metadata={"asymptote_recipe": str(rel), "asymptote_run_dir": str(run_dir)})
    print(f"asymptote: submitted {job_id}: {rel} -> {run_dir}", file=sys.stderr)
    if args.no_wait:
        print(job_id)
        return 0
    try:
        asyncio.run(_tail(jc, job_id))
    except KeyboardInterrupt:
        print(f"\nasymptote: detached; {job_id} keeps running (asymptote stop {job_id} --address {args.address})",
              file=sys.stderr)
        return 130
    status = str(jc.get_job_status(job_id).value)
    print(f"asymptote: {job_id} {status.lower()}; run dir {run_dir}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


async def _tail(jc, job_id: str) -> None:
    async for lines in jc.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def jobs(args: argparse.Namespace) -> int:
    jc = client(args.address)
    listed = sorted((j for j in jc.list_jobs() if j.submission_id), key=lambda j: j.start_time or 0)
    if not listed:
        print(f"no jobs on {args.address}")
    for j in listed:
        meta = j.metadata or {}
        what = meta.get("asymptote_recipe") or (j.entrypoint or "")[:60]
        print(f"{j.submission_id}  {str(j.status.value):<9}  {what}  {meta.get('asymptote_run_dir', '')}")
    return 0


def stop(args: argparse.Namespace) -> int:
    jc = client(args.address)
    try:
        jc.get_job_info(args.job_id)
    except Exception:  # noqa: BLE001 - the SDK raises RuntimeError with an HTTP body for an unknown id
        raise UserError(f"no job {args.job_id} on {args.address} (`asymptote jobs` lists them)") from None
    stopped = jc.stop_job(args.job_id)
    print(f"asymptote: {args.job_id} " + ("stopping" if stopped else "had already finished"), file=sys.stderr)
    return 0


def _same_machine(address: str) -> bool:
    """Submitting to a head on this machine: the job runs with this Python."""
    from rl.ray_address import host_port

    return host_port(address, 8265)[0] in ("127.0.0.1", "localhost", "::1")


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
