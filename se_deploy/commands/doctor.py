"""``se-deploy doctor``: what can run on this machine, and what to install for the rest."""

from __future__ import annotations

import typer

from se_deploy.commands._options import files


def _print_report(report: dict, line=None) -> None:
    """Print the report with ``line(text, style=None)`` (the console's by default)."""
    from se_deploy.envinfo import environment_rows

    if line is None:
        from se_deploy.console import line

    line("Backends", style="bold")
    for b in report["backends"]:
        if b["available"]:
            extra = ""
            if b["name"] == "onnxruntime":
                extra = f"  providers: {', '.join(b['details'].get('providers', []))}"
            elif b["name"] == "tensorrt":
                extra = f"  CUDA API: {', '.join(b['details'].get('cuda_apis', []))}"
            elif b["name"] == "openvino":
                devices = b["details"].get("devices", {})
                extra = f"  devices: {', '.join(f'{d} ({n})' for d, n in devices.items()) or 'none'}"
                cpu = b["details"].get("cpu_precision")
                if cpu:
                    extra += f"; CPU precision {cpu['precision']} ({cpu['reason']})"
            line(f"  ok       {b['name']} {b['version']}{extra}")
        else:
            ver = f" {b['version']}" if b.get("version") else ""
            line(f"  missing  {b['name']}{ver}: {b['reason']}")
    tx = report.get("trtexec") or {}
    if tx.get("path"):
        line(f"  {'ok' if tx.get('version') else 'broken':<8} trtexec {tx.get('version') or ''} ({tx['path']})"
             + (f": {tx['error']}" if tx.get("error") else ""))
    else:
        line("  missing  trtexec: not on PATH nor in /usr/src/tensorrt/bin (JetPack: sudo apt install libnvinfer-bin)")
    line("")
    line("Machine", style="bold")
    rows = environment_rows(report["environment"])
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        line(f"  {k.ljust(width)}  {v}")
    line("")
    if report["missing"]:
        line("Missing (with the command to install it)", style="bold")
        for m in report["missing"]:
            line(f"  {m['component']}: {m['why']}")
            line(f"      install: {m['install']}")
    else:
        line("Nothing missing: every backend can run here.", style="bold")


def register(command) -> None:
    @command("doctor", help="List available backends, versions, GPU/CUDA/TensorRT/DLA and Jetson state, "
                            "and what is missing with the command to install it.")
    @files()
    def doctor(
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        from se_deploy._util import dump_json
        from se_deploy.console import raw
        from se_deploy.doctor import doctor_report

        report = doctor_report()
        if as_json:
            raw(dump_json(report))
        else:
            _print_report(report)
