#!/usr/bin/env python3
"""Start LungSeg's two local servers together: the Streamlit app and the static web page.

    .venv/bin/python scripts/start.py [--port 8501] [--web-port 8502] [--address 127.0.0.1]

Ports also come from env LUNGSEG_PORT / LUNGSEG_WEB_PORT (flags win). The app links to the web
page at LUNGSEG_WEB_URL, by default this script's web page address. The app runs through
app/serve.py, which loads the default model before Streamlit answers, so the first visitor does
not wait for it: the script says it is loading the model, and prints the two addresses only once
both servers answer. Ctrl-C stops both; if either server exits, the other is stopped too and the
script exits with its status. Both servers run with MALLOC_ENV (glibc's allocator settings) unless
the environment sets those variables itself.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: web/serve.py's own address line, left out: this script prints the addresses once both answer.
WEB_BANNER = "LungSeg page: "
#: glibc malloc settings for the servers: buffers of 1 MiB and more get mappings of their own,
#: handed back to the system when freed (by default glibc raises that threshold up to 32 MiB after
#: freeing big buffers, and freed full-size images then stay in its heaps), and two arenas, not
#: eight per core for the threads sessions run in. bench/load_app.py --large, 3 sessions x 2
#: X-rays of 20-25 MP, without and with: peak 1573 -> 1346 MiB, kept after the sessions closed
#: 1352 -> 1121 MiB; the cost is mapping buffers afresh, about 0.3 s more per 22 MP X-ray.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_ARENA_MAX": "2"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LUNGSEG_PORT", 8501)),
                        help="Streamlit app port (env LUNGSEG_PORT, default 8501)")
    parser.add_argument("--web-port", type=int,
                        default=int(os.environ.get("LUNGSEG_WEB_PORT", 8502)),
                        help="static web page port (env LUNGSEG_WEB_PORT, default 8502)")
    parser.add_argument("--address", default=os.environ.get("LUNGSEG_ADDRESS", "127.0.0.1"),
                        help="address both servers listen on (default 127.0.0.1)")
    parser.add_argument("--no-web", action="store_true", help="start only the Streamlit app")
    return parser.parse_args(argv)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def forward(stream, skip: str) -> None:
    """Copy a server's output lines to ours, but those starting with ``skip``."""
    for line in stream:
        if not line.startswith(skip):
            sys.stdout.write(line)
            sys.stdout.flush()


def stop(processes: dict[str, subprocess.Popen], grace: float = 8.0) -> None:
    """SIGTERM each server's process group, then SIGKILL what is left after ``grace`` seconds."""
    for process in processes.values():
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def main(argv=None) -> int:
    args = parse_args(argv)
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    app_url = f"http://{host}:{args.port}/"
    web_url = f"http://{host}:{args.web_port}/"
    env = {**MALLOC_ENV, **os.environ}
    serve = ROOT / "web" / "serve.py"
    run_web = not args.no_web and serve.is_file()
    if run_web:
        env.setdefault("LUNGSEG_WEB_URL", web_url)

    commands = {
        # app.serve = streamlit run streamlit_app.py, with the default model loaded first.
        "app": [sys.executable, "-m", "app.serve",
                "--server.headless", "true", "--server.address", args.address,
                "--server.port", str(args.port), "--browser.gatherUsageStats", "false"],
    }
    if run_web:
        commands["web"] = [sys.executable, str(serve), "--port", str(args.web_port),
                           "--host", args.address]
    elif not args.no_web:
        print(f"note: {serve.relative_to(ROOT)} not found; starting only the Streamlit app.",
              flush=True)

    processes: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("LungSeg: loading the model… (the addresses follow when both servers answer)",
              flush=True)
        for name, command in commands.items():
            # Own process groups: Ctrl-C reaches this script, which stops both servers in order.
            output = {"stdout": subprocess.PIPE, "text": True} if name == "web" else {}
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                                               **output)
            if output:
                threading.Thread(target=forward, args=(processes[name].stdout, WEB_BANNER),
                                 daemon=True).start()
        checks = {"app": app_url + "_stcore/health"}
        if run_web:
            checks["web"] = web_url
        for name, url in checks.items():
            while not stopping and processes[name].poll() is None:
                if wait_ready(url, processes[name], timeout=1.0):
                    break
        if not stopping and all(process.poll() is None for process in processes.values()):
            print(f"LungSeg app (server-side inference): {app_url}", flush=True)
            if run_web:
                print(f"LungSeg web page (in-browser, nothing uploaded): {web_url}", flush=True)
            print("Ctrl-C stops both.", flush=True)
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} server exited with status {process.returncode}; stopping.",
                          flush=True)
                    stop(processes)
                    return process.returncode or 1
            time.sleep(0.3)
        print("Stopping…", flush=True)
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
