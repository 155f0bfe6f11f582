"""`digaas report`: save a running digaas's summary and plots of a window into a folder."""

import argparse
import json
import math
import os
import pathlib
import sys

import requests

from digaas import plots

HTTP_TIMEOUT_SECONDS = 660.0


def add_arguments(parser):
    parser.add_argument("--url", required=True,
                        help="base URL of the running digaas, such as http://127.0.0.1:9090")
    parser.add_argument("--start", required=True, type=_unix_seconds,
                        help="window start, unix seconds (requests with start_time >= START)")
    parser.add_argument("--end", required=True, type=_unix_seconds,
                        help="window end, unix seconds (requests with start_time < END)")
    parser.add_argument("--out", required=True, type=pathlib.Path,
                        help="folder to write summary.json and the PNG plots into;"
                             " created if missing")
    parser.add_argument("--nameserver", help="only requests to this nameserver address")
    parser.add_argument("--condition", help="only requests with this condition")
    parser.add_argument("--token", default=os.environ.get("DIGAAS_API_TOKEN") or None,
                        help="API token of a digaas with API_TOKEN set"
                             " (default: the DIGAAS_API_TOKEN environment variable)")


def _unix_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid unix seconds {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid unix seconds {text!r}: not finite")
    return value


def run(args):
    """Fetch /stats and every plot kind; return the exit status."""
    if args.end < args.start:
        print(f"digaas report: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return 2

    params = {"start": repr(args.start), "end": repr(args.end)}
    for name in ("nameserver", "condition"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)

    args.out.mkdir(parents=True, exist_ok=True)
    base = args.url.rstrip("/")
    headers = {} if not args.token else {"Authorization": f"Bearer {args.token}"}

    try:
        summary = _get(f"{base}/stats", params, headers)
        summary_path = args.out / "summary.json"
        summary_path.write_text(json.dumps(summary.json(), indent=2) + "\n")
        print(summary_path)

        for kind in plots.KINDS:
            image = _get(f"{base}/plots/{kind}.png", params, headers)
            image_path = args.out / f"{kind}.png"
            image_path.write_bytes(image.content)
            print(image_path)
    except ReportError as error:
        print(f"digaas report: {error}", file=sys.stderr)
        return 1

    return 0


class ReportError(Exception):
    """digaas could not be reached or returned an error."""


def _get(url, params, headers):
    try:
        response = requests.get(url, params=params, headers=headers,
                                timeout=HTTP_TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise ReportError(f"GET {url} failed: {error}") from None

    if response.status_code != 200:
        try:
            description = response.json().get("description", response.text)
        except ValueError:
            description = response.text[:500]
        raise ReportError(f"GET {response.url} failed with status {response.status_code}: {description}")
    return response
