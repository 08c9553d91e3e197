"""``cds-service evaluate`` and ``cds-service simulate``: the integration tester's two commands.

    cds-service evaluate REQUEST.json [--json] [--explain]
    cds-service simulate --fhir-server URL --patient ID --order ORDER.json [--hook order-sign]
                         [--service-url URL] [--key KEY.pem --iss ISS] [--json] [--explain]
                         [--fhir-token-file FILE]   (or CDS_FHIR_TOKEN in the environment)

Exit status: 0 the service answered with cards (possibly none); 1 it refused the request (4xx/5xx);
2 the command could not run (unreadable file, unreachable server, bad key, the tools extra missing).

The FHIR token comes from ``--fhir-token-file FILE``, else ``--fhir-token TOKEN``, else the environment
variable CDS_FHIR_TOKEN (the file and the variable keep it out of ``ps``; the two flags exclude each other).

Imports are deferred into the commands: this module is loaded whenever ``cds-service`` starts,
including before gunicorn sets up its metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.integration.tools import require_tools


def register_cli(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="run the rules on a saved CDS Hooks request, offline",
        description="Run the rules on a saved CDS Hooks request without a server or network: prefetch "
        "only, missing keys are reported as unavailable (as the service does without fhirServer).",
    )
    evaluate.add_argument(
        "request", type=Path, help="a CDS Hooks request (JSON), e.g. fixtures/requests/*.json"
    )
    evaluate.add_argument("--service", help="service id (default: the service answering the request's hook)")
    evaluate.add_argument("--today", type=date.fromisoformat, help="evaluate as of this date (YYYY-MM-DD)")
    _output_flags(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    simulate = subparsers.add_parser(
        "simulate",
        help="act as an EHR: fill prefetch from a FHIR server, sign, call the service, show the cards",
        description="Do what an EHR does for one hook call: read discovery, fill the prefetch templates "
        "against the FHIR server, sign a JWT if a key is given, POST the call and show the cards. "
        "A FHIR token is read from --fhir-token-file, else --fhir-token, else $CDS_FHIR_TOKEN.",
    )
    simulate.add_argument("--fhir-server", required=True, help="FHIR R4 base URL holding the patient")
    simulate.add_argument("--patient", required=True, help="Patient id on that server")
    simulate.add_argument(
        "--order", required=True, type=Path, help="the draft order: a MedicationRequest JSON or a Bundle"
    )
    simulate.add_argument(
        "--hook",
        default="order-sign",
        choices=("order-select", "order-sign", "medication-prescribe"),
        help="hook to fire (default order-sign)",
    )
    simulate.add_argument(
        "--service-url", default="http://127.0.0.1:8080", help="service base URL (default %(default)s)"
    )
    simulate.add_argument(
        "--key",
        type=Path,
        help="private key to sign the client JWT: PEM (from `cds-service keys new`) or a JWK with 'd'",
    )
    simulate.add_argument("--iss", help="JWT issuer the service trusts (required with --key)")
    simulate.add_argument("--kid", help="JWT key id (default: the key's RFC 7638 thumbprint)")
    simulate.add_argument("--tenant", help="JWT tenant claim (optional)")
    simulate.add_argument(
        "--user", default="Practitioner/simulated-prescriber", help="context.userId (default %(default)s)"
    )
    token = simulate.add_mutually_exclusive_group()
    token.add_argument(
        "--fhir-token-file",
        type=Path,
        help="file holding the bearer token for the FHIR server (sent as fhirAuthorization too)",
    )
    token.add_argument(
        "--fhir-token",
        help="the bearer token itself (visible in `ps`: prefer --fhir-token-file or $CDS_FHIR_TOKEN)",
    )
    simulate.add_argument(
        "--no-prefetch", action="store_true", help="send no prefetch: the service must query the FHIR server"
    )
    simulate.add_argument(
        "--no-fhir-server", action="store_true", help="do not send fhirServer: the service sees prefetch only"
    )
    simulate.add_argument("--save-request", type=Path, help="write the request as posted (for `evaluate`)")
    _output_flags(simulate)
    simulate.set_defaults(func=run_simulate)


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the raw CDS Hooks response")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="per rule: the data it looked at, what it computed and why it fired or not",
    )
    color = parser.add_mutually_exclusive_group()
    color.add_argument("--color", dest="color", action="store_true", default=None, help="force colour")
    color.add_argument("--no-color", dest="color", action="store_false", help="no colour")


def _fail(message: str) -> int:
    print(f"cds-service: {message}", file=sys.stderr)
    return 2


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc


def fhir_token(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """--fhir-token-file, else --fhir-token, else $CDS_FHIR_TOKEN; None when none is given."""
    if args.fhir_token_file is not None:
        try:
            token = args.fhir_token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ValueError(f"cannot read --fhir-token-file {args.fhir_token_file}: {reason}") from exc
        if not token or len(token.splitlines()) != 1:
            raise ValueError(f"--fhir-token-file {args.fhir_token_file} must hold the token on one line")
        return token
    if args.fhir_token:
        return str(args.fhir_token)
    return env.get("CDS_FHIR_TOKEN", "").strip() or None


def run_evaluate(args: argparse.Namespace) -> int:
    from cds_service.config import Settings
    from cds_service.integration import explain, render
    from cds_service.integration.offline import evaluate_request
    from cds_service.protocol.errors import CdsError
    from cds_service.runtime import Runtime

    require_tools("cds-service evaluate")
    try:
        body = _read_json(args.request, "request")
    except ValueError as exc:
        return _fail(str(exc))
    runtime = Runtime.start(Settings.from_env())
    today = args.today or date.today()
    console = render.make_console(sys.stdout, color=args.color)
    try:
        evaluation = evaluate_request(
            body,
            runtime.knowledge,
            runtime.templates,
            options=runtime.options,
            service_id=args.service,
            today=today,
        )
    except CdsError as exc:
        if args.json:
            render.print_json({"status": exc.status, "response": exc.body()}, sys.stdout)
        else:
            render.print_problem(exc.status, exc.body(), console)
        return 1
    response = {"cards": evaluation.outcome.cards}
    result = None
    if args.explain:
        result = explain.explanation(evaluation, runtime.knowledge, today=today, options=runtime.options)
    if args.json:
        render.print_json({"response": response, "explain": result} if result else response, sys.stdout)
        return 0
    render.print_cards(response["cards"], console)
    if result:
        console.print()
        explain.print_explanation(result, console)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    require_tools("cds-service simulate")
    from cds_service.integration import render, simulator

    try:
        order = _read_json(args.order, "order")
        try:
            key = simulator.load_signing_key(args.key, args.kid) if args.key else None
        except ValueError as exc:
            raise ValueError(f"--key: {exc}") from exc
        if key is not None and not args.iss:
            return _fail("--iss is required with --key (the issuer the service trusts)")
        options = simulator.SimulateOptions(
            fhir_server=args.fhir_server,
            patient_id=args.patient,
            order=order,
            hook=args.hook,
            service_url=args.service_url,
            user_id=args.user,
            key=key,
            iss=args.iss,
            tenant=args.tenant,
            fhir_token=fhir_token(args, os.environ),
            send_prefetch=not args.no_prefetch,
            send_fhir_server=not args.no_fhir_server,
            collect_prefetch=args.explain,
        )
        simulation = simulator.simulate(options)
    except (ValueError, simulator.SimulatorError) as exc:
        return _fail(str(exc))
    if args.save_request:
        args.save_request.write_text(json.dumps(simulation.request, indent=2) + "\n", encoding="utf-8")
    console = render.make_console(sys.stdout, color=args.color)
    result = None
    if args.explain:
        result = _explain_simulation(simulation, console, sent_prefetch=not args.no_prefetch)
    if args.json:
        payload: Any = simulation.response
        if result is not None:
            payload = {"response": simulation.response, "explain": result}
        if simulation.warnings and isinstance(payload, dict):
            payload = {**payload, "warnings": simulation.warnings}
        render.print_json(payload, sys.stdout)
        return 0 if simulation.status == 200 else 1
    counts = ", ".join(f"{k} {n}" for k, n in simulation.prefetch_counts.items()) or "none sent"
    took = f"{simulation.elapsed_ms:.0f} ms"
    console.print(f"POST {simulation.endpoint} -> HTTP {simulation.status} in {took}", soft_wrap=True)
    console.print(f"prefetch resources: {counts}", soft_wrap=True)
    for warning in simulation.warnings:
        console.print(f"WARNING: {warning}", style="bold yellow", soft_wrap=True, markup=False)
    if simulation.status != 200:
        render.print_problem(simulation.status, simulation.response, console)
        return 1
    render.print_cards(simulation.response.get("cards") or [], console)
    if result is not None:
        console.print()
        from cds_service.integration import explain

        explain.print_explanation(result, console)
    return 0


def _explain_simulation(simulation: Any, console: Any, *, sent_prefetch: bool) -> dict[str, Any] | None:
    """Explain from the same data, evaluated locally; warn if the local cards differ from the service's.

    The data is what the simulator read with the service's prefetch queries. Without prefetch the
    service ran those queries against the FHIR server itself, so that is where the data came from.
    """
    from cds_service.config import Settings
    from cds_service.integration import explain
    from cds_service.integration.offline import evaluate_request
    from cds_service.protocol.errors import CdsError
    from cds_service.runtime import Runtime

    runtime = Runtime.start(Settings.from_env())
    body = {k: v for k, v in simulation.request.items() if k not in {"fhirServer", "fhirAuthorization"}}
    body["prefetch"] = simulation.prefetch
    today = date.today()
    try:
        evaluation = evaluate_request(
            body, runtime.knowledge, runtime.templates, options=runtime.options, today=today
        )
    except CdsError as exc:
        console.print(f"(no explanation: the request is refused locally too: {exc.diagnostics})")
        return None
    result = explain.explanation(evaluation, runtime.knowledge, today=today, options=runtime.options)
    if not sent_prefetch:
        for section in result.get("data", {}).values():
            if section.get("source") == "prefetch":
                section["source"] = "FHIR server"
    remote = sorted(
        c["source"]["topic"]["code"] for c in (simulation.response or {}).get("cards") or [] if "source" in c
    )
    local = sorted(c["topic"] for c in result.get("cards", []))
    if simulation.status == 200 and remote != local:
        result["warning"] = (
            f"the service answered {remote} but this version of the rules gives {local}: "
            "the service runs other rules or other configuration"
        )
        console.print(result["warning"], style="yellow")
    return result
