"""`emosteer study create|serve|analyze`: a perceptual listening test of steered speech."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
from pathlib import Path

from emosteer.cli._common import add_force
from emosteer.errors import ConfigError

TOKEN_ENV = "EMOSTEER_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 8


def _create(args: argparse.Namespace) -> int:
    from emosteer.study.design import StudyConfig, create_study, load_study_config

    cfg = load_study_config(args.config) if args.config else StudyConfig()
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.trials is not None:
        cfg = dataclasses.replace(cfg, trials_per_participant=args.trials)
    study = create_study(args.input, args.out, cfg, csv_path=args.csv, force=args.force,
                         skip_bad=args.skip_bad)
    kinds: dict[str, int] = {}
    for s in study.stimuli:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"study {cfg.name!r} at {study.root}: {len(study.stimuli)} stimuli {kinds}, "
          f"{cfg.trials_per_participant} trials per participant", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from emosteer.study.design import open_study
    from emosteer.study.server import serve

    study = open_study(args.study)
    if args.admin_token is not None:
        token, source = args.admin_token, "--admin-token"
        # Other local users see a command line in ps and /proc, but not the environment.
        print(f"note: --admin-token is visible to other users in ps; set ${TOKEN_ENV} instead",
              file=sys.stderr)
    else:
        token, source = os.environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
    if token is None:
        token = secrets.token_urlsafe(16)
        print(f"admin token (Authorization: Bearer ...): {token}", file=sys.stderr)
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{source}: use at least {MIN_TOKEN_CHARS} characters")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: not a TCP port")
    print(f"serving {study.root} on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    serve(study, host=args.host, port=args.port, admin_token=token)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from emosteer.study.analyze import analyze_study

    if args.bootstrap < 100:
        raise ConfigError("--bootstrap: use at least 100 resamples")
    summary = analyze_study(args.study, args.out, n_boot=args.bootstrap, seed=args.seed)
    brief = {k: summary[k] for k in ("n_participants", "n_included", "agreement")}
    print(json.dumps(brief, indent=2, default=str))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="perceptual listening study: create, serve, analyze")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    c = sub.add_parser("create", help="build a study directory from an evaluate run")
    c.add_argument("input", type=Path, help="directory with stimuli.json (or audio + --csv)")
    c.add_argument("out", type=Path, help="study directory to create")
    c.add_argument("--csv", type=Path, help="CSV listing the stimuli (same fields as stimuli.json)")
    c.add_argument("--config", type=Path, help="study config, JSON or YAML (StudyConfig keys)")
    c.add_argument("--seed", type=int, help="override the config's seed")
    c.add_argument("--trials", type=int, help="override trials_per_participant")
    c.add_argument("--skip-bad", action="store_true",
                   help="report and leave out unreadable stimuli instead of failing")
    add_force(c)
    c.set_defaults(func=_create)

    s = sub.add_parser(
        "serve", help="run the web app for participants",
        description="Run the web app for participants. Pass the admin token in the environment "
        f"(`{TOKEN_ENV}=... emosteer study serve DIR`): a command-line argument is visible to "
        "every local user in ps. Without a token one is generated and printed.")
    s.add_argument("study", type=Path, help="study directory")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--admin-token", metavar="TOKEN",
                   help="admin token; visible to other users in ps, so prefer "
                   f"${TOKEN_ENV}, which is read when this flag is absent")
    s.set_defaults(func=_serve)

    a = sub.add_parser("analyze", help="statistics, plots and an HTML fragment")
    a.add_argument("study", type=Path, help="study directory")
    a.add_argument("--out", type=Path, help="output directory (default STUDY/analysis)")
    a.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    a.set_defaults(func=_analyze)
