"""`lagchand-edge serve`: the LAGCHand page with one LiteRT artifact, on this machine's browser."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from lagchand_edge.cli.common import console, stdout


def serve(
    artifact: Path = typer.Argument(..., help="A LiteRT artifact folder (`convert --target tflite`; fp32, fp16 or int8, nchw or nhwc)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; the default keeps the page on this machine."),
    detect: bool = typer.Option(False, "--detect", help="Offer MediaPipe's palm detector on the page to find the hands "
                                "(opt-in, Apache-2.0; `lagchand-edge anchors fetch` downloads it once)."),
) -> None:
    """Serve the page that runs ARTIFACT in the browser (LiteRT.js, WASM or WebGPU) on a photo, a video or the webcam."""
    from apps.web.server import MISSING_VENDOR, Site, make_server, page_runs, vendor_installed
    from lagchand_edge.artifact import read_manifest
    from lagchand_edge.errors import UserError

    manifest = read_manifest(artifact)
    if not page_runs(manifest):
        raise UserError(f"{artifact}: a {manifest['target']!r} artifact; the page runs LiteRT artifacts (convert with --target tflite)")
    if not vendor_installed():
        raise UserError(MISSING_VENDOR)
    detector_file = None
    if detect:
        from lagchand_edge.profile.anchors import cached_detector

        detector_file = cached_detector()
    try:
        server = make_server(Site.build(artifact, manifest, detector_file), host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); try another --port") from None
    bound_host, bound_port = server.server_address[:2]
    try:
        if not ipaddress.ip_address(bound_host).is_loopback:
            console.print(f"[yellow]note:[/] listening on {bound_host}: other machines on the network can open the page")
    except ValueError:
        pass
    stdout.print(f"serving {artifact} ({manifest['precision']}) at http://{'localhost' if bound_host == '127.0.0.1' else bound_host}:{bound_port}/"
                 " (Ctrl-C stops)", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
