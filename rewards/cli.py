"""`asymptote hub serve` and `asymptote reward score`.

`hub serve` starts the Ray-backed hub and its HTTP front. `reward score`
scores a JSONL file offline with the same Scorer a replica uses, in this
process (no Ray start-up for a file, unless the config names
`rewards.judge`: then a local Ray and the judge engines are started for the
file and stopped after it): each output line is the input plus `reward` and
`details`; a bad line gets an error in its details and the other lines are
still scored. Lines sharing a `group` value form one group for the length
terms and the GRM sets; other lines are groups of one.

A config whose `rewards.judge` names no model gets its judge from the caller
of `register` (`default_judge`, a function returning the judge's folder):
the `asymptote` command passes one that builds the project's tiny judge, so
this package never imports the learner side and serving never trains a model.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from typing import Callable, Optional

from core.errors import UserError

DefaultJudge = Optional[Callable[[], object]]  # () -> the judge's folder (a str or Path)


def register(subparsers, default_judge: DefaultJudge = None) -> None:
    """Add `hub serve` and `reward score`; `default_judge` resolves the judge's
    folder for a config whose `rewards.judge.model` is unset."""
    hub = subparsers.add_parser("hub", help="the reward hub service")
    hub_sub = hub.add_subparsers(dest="hub_verb", required=True, metavar="VERB")
    serve = hub_sub.add_parser("serve", help="serve POST /v1/score and GET /healthz")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs a token)")
    serve.add_argument("--port", type=int, default=8711)
    serve.add_argument("--token", default=None, help="bearer token (or $ASYMPTOTE_HUB_TOKEN)")
    serve.add_argument("--config", default=None, help="YAML/JSON file with a rewards: section or a RewardsConfig")
    serve.add_argument("--replicas", type=int, default=None, help="override rewards.replicas")
    serve.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    # defaults live in rewards.http.HttpLimits (not imported here: it pulls in pydantic for every verb)
    serve.add_argument("--header-timeout", type=float, default=None, metavar="S",
                       help="seconds to send request headers, then the connection is closed (default 10)")
    serve.add_argument("--body-timeout", type=float, default=None, metavar="S",
                       help="seconds to send a request body whole, then 408 (default 30)")
    serve.add_argument("--max-connections", type=int, default=None, metavar="N",
                       help="open connections served at once, then 503 (default 64)")
    serve.set_defaults(func=serve_handler, default_judge=default_judge)

    reward = subparsers.add_parser("reward", help="score rewards offline")
    reward_sub = reward.add_subparsers(dest="reward_verb", required=True, metavar="VERB")
    score = reward_sub.add_parser("score", help="score a JSONL file of samples")
    score.add_argument("--input", required=True, help="JSONL, one sample per line")
    score.add_argument("--output", default=None, help="JSONL to write (default: stdout)")
    score.add_argument("--config", default=None, help="YAML/JSON file with a rewards: section or a RewardsConfig")
    score.set_defaults(func=score_handler, default_judge=default_judge)


def load_config(path):
    from pydantic import ValidationError

    from rewards.config import RewardsConfig

    if path is None:
        return RewardsConfig()
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise UserError(f"--config {path}: {err.strerror}") from None
    try:
        import yaml

        data = yaml.safe_load(text) or {}
    except Exception as err:  # noqa: BLE001
        raise UserError(f"--config {path}: not YAML/JSON ({err})") from None
    if isinstance(data, dict) and "rewards" in data:
        data = data["rewards"]
    try:
        return RewardsConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise UserError(f"--config {path}: rewards.{loc}: {first['msg']}") from None


def serve_handler(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from rewards.http import HttpLimits, resolve_token, serve

    token = resolve_token(args.host, args.token)
    flags = {"header_timeout_s": ("--header-timeout", args.header_timeout),
             "body_timeout_s": ("--body-timeout", args.body_timeout),
             "max_connections": ("--max-connections", args.max_connections)}
    try:
        limits = HttpLimits(**{field: value for field, (_, value) in flags.items() if value is not None})
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{flags[first['loc'][0]][0]}: {first['msg']}") from None
    cfg = load_config(args.config)
    if args.replicas is not None:
        cfg = cfg.model_copy(update={"replicas": args.replicas})
    import ray

    from rewards.hub import start_hub
    from rewards.judge.pool import default_judge_model

    model = default_judge_model(cfg, args.default_judge)
    ray.init(address=args.address, include_dashboard=False)
    hub = start_hub(cfg, model)
    print(f"asymptote: reward hub on http://{args.host}:{args.port} ({cfg.replicas} replicas)", file=sys.stderr)
    try:
        serve(hub, args.host, args.port, token, limits)
    finally:
        hub.shutdown()
    return 0


def read_samples(lines) -> tuple[list, list[str | None]]:
    """Parsed lines (None where unreadable) and the error per line."""
    samples, errors = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            s = json.loads(line)
            if not isinstance(s, dict):
                raise ValueError("not a JSON object")
            samples.append(s)
            errors.append(None)
        except ValueError as err:
            samples.append({"line": n, "raw": line.rstrip("\n")[:200]})
            errors.append(f"line {n}: bad JSON ({err})")
    return samples, errors


@contextlib.contextmanager
def judge_engines(cfg, default_judge: DefaultJudge = None):
    """The judge engines `cfg.judge` names (rewards.judge.pool.start_judges),
    on a Ray instance started here for them and stopped after (or the one this
    process already runs); None when the config names no judge. Ray's CPUs
    are declared as at least the engines ask for: they share this machine's
    cores, as the scorer does."""
    if cfg.judge is None:
        yield None
        return
    import os

    import ray

    from rewards.judge.pool import default_judge_model, resolve_model, start_judges

    jc = cfg.judge
    model = resolve_model(jc, default_judge_model(cfg, default_judge))
    started = not ray.is_initialized()
    if started:
        cpus = max(os.cpu_count() or 1, math.ceil(jc.replicas * jc.cpus_per_replica))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    pool = None
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if jc.gpus_per_replica * jc.replicas > gpus:
            raise UserError(f"rewards.judge: {jc.replicas} engine(s) of {jc.gpus_per_replica:g} GPU need "
                            f"{jc.gpus_per_replica * jc.replicas:g} GPUs, this machine has {gpus:g}")
        print(f"asymptote: starting {jc.replicas} judge engine(s) ({model})", file=sys.stderr)
        pool = start_judges(jc, model)
        yield pool
    finally:
        if pool is not None:
            pool.shutdown()
        if started:
            ray.shutdown()


def score_handler(args: argparse.Namespace) -> int:
    from rewards.scorer import Scorer

    cfg = load_config(args.config).with_custom_checked()
    try:
        with open(args.input) as f:
            samples, errors = read_samples(f)
    except OSError as err:
        raise UserError(f"--input {args.input}: {err.strerror}") from None
    groups: dict[object, list[int]] = {}
    for i, s in enumerate(samples):
        key = ("group", json.dumps(s.get("group"))) if errors[i] is None and "group" in s else ("line", i)
        groups.setdefault(key, []).append(i)
    order = list(groups.values())
    with judge_engines(cfg, args.default_judge) as judges:
        scorer = Scorer(cfg, judges)
        try:
            todo = [[samples[i] if errors[i] is None else None for i in idxs] for idxs in order]
            results = scorer.score_groups(todo)
        finally:
            scorer.close()
    by_index = {}
    for idxs, rs in zip(order, results):
        for i, r in zip(idxs, rs):
            if errors[i] is not None:
                r.details = {"correct": None, "timeout": False, "error": errors[i], "terms": {}}
                r.score = 0.0
            by_index[i] = r
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        for i, s in enumerate(samples):
            out.write(json.dumps({**s, "reward": by_index[i].score, "details": by_index[i].details}) + "\n")
    finally:
        if args.output:
            out.close()
    return 0
