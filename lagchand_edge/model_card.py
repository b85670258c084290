"""The model card every artifact folder carries: what the file is, how to feed it and read it,
how it was quantized and checked, and the card of the checkpoint it came from."""

from __future__ import annotations

from importlib import resources

from lagchand_edge.checkpoint import bundled_checkpoint
from lagchand_edge.drift.harness import DEFAULT_GATES
from lagchand_edge.io import file_sha256

MODEL_CARD = "MODEL_CARD.md"


def artifact_card(manifest: dict, parity_mm: float | None, parity_note: str) -> str:
    """Markdown for the artifact described by `manifest` (its parity check at conversion included)."""
    source, recipe = manifest["source"], manifest["recipe"]
    lines = [f"# LAGCHand, {manifest['target']} {manifest['precision']}", "",
             f"`{manifest['file']}` ({manifest['size_bytes'] / 1e6:.2f} MB, sha256 `{manifest['sha256'][:16]}...`), converted on "
             f"{manifest['created']} from `{source['checkpoint']}` (config `{source['config']}`, sha256 "
             f"`{source['checkpoint_sha256'][:16]}...`). `manifest.json` beside it has every detail.", "",
             "## Feeding it and reading it", "", "| tensor | shape | dtype | meaning |", "| --- | --- | --- | --- |"]
    for spec in manifest["inputs"]:
        lines.append(f"| input `{spec['name']}` | {spec['shape']} | {spec['dtype']} | {spec['layout']} in {spec['range']}; "
                     f"{spec['normalisation']} |")
    lines += [f"| output `{spec['name']}` | {spec['shape']} | {spec['dtype']} | {spec['units']} |" for spec in manifest["outputs"]]
    lines += ["", "Axis 1 of every output is the hand: 0 left, 1 right. Joints follow InterHand2.6M's order per hand (thumb tip "
              "to thumb base, then index, middle, ring, pinky, then the wrist). The camera projects a point v into the 256x256 "
              "crop as `s * 256 * v[:2] + t * 128 + 128`. `hand_faces.npy` (left, right) holds the mesh triangles for drawing.", "",
              "## Precision", ""]
    lines.append(f"- {manifest['precision']}: {recipe.get('quantizer') or recipe.get('converter') or 'no quantization'}")
    if recipe.get("int8_plan"):
        plan = recipe["int8_plan"]
        lines.append(f"- int8 plan: W8A8 in {plan['static_w8a8'] or 'nothing'}; float activations in "
                     f"{plan['float_activations'] or 'nothing'}; float in {plan['keep_float'] or 'nothing'}")
    if manifest.get("calibration"):
        calibration = manifest["calibration"]
        lines.append(f"- calibrated on {calibration['count']} images of {calibration['source']} (ids sha256 `{calibration['ids_sha256'][:16]}...`)")
    if manifest.get("qat"):
        qat = manifest["qat"]
        shared = f"; trained as {qat['trained_for']}'s, the same student" if qat.get("trained_for", manifest["target"]) != manifest["target"] else ""
        lines.append(f"- quantization-aware training: `{qat['checkpoint']}` ({qat['scheme']}, {qat['epochs']} epochs on {qat['data']}{shared})")
    parity = f"{parity_mm:.4f} mm" if parity_mm is not None else "not run"
    lines += ["", "## Checks", "", f"- At conversion, the largest vertex difference from the FP32 model: {parity} ({parity_note}).",
              "- Before shipping: `lagchand-edge drift <this folder>` checks accuracy against the FP32 model on InterHand2.6M-format "
              f"samples (gate: |ΔMPJPE| and |ΔMPVPE| within {DEFAULT_GATES[manifest['precision']]} mm at {manifest['precision']}); "
              "`lagchand-edge profile "
              "<this folder>` measures latency.", "", "## The checkpoint it came from", ""]
    lines.append(_source_card(source))
    return "\n".join(lines) + "\n"


def _source_card(source: dict) -> str:
    bundled = bundled_checkpoint()
    if bundled.is_file() and source["checkpoint_sha256"] == file_sha256(bundled):
        card = (resources.files("lagchand_edge") / "assets" / MODEL_CARD).read_text()
        return card.replace("\n# ", "\n### ").replace("# ", "### ", 1)  # its headings below this card's
    return (f"A checkpoint of your own: its training record is the JSON sidecar beside `{source['checkpoint']}` "
            "(command, data, per-epoch losses and validation), when it was trained with `lagchand-edge train`.")
