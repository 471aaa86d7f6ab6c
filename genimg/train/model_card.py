"""``MODEL_CARD.md`` of a run, after Mitchell et al. 2019 ("Model Cards for Model Reporting")
and the Hugging Face model-card template: model details, intended and out-of-scope uses,
training data, evaluation results, risks and limitations, and how to verify the provenance
watermark of the images the model wrote.

The loop writes it when a run starts and when it ends; ``genimg.evaluate`` rewrites it after
each evaluation, so the results section always shows the run's ``eval.json``.
"""

from __future__ import annotations

import datetime
import json
import pathlib

from genimg import watermark as wm
from genimg.train import run_provenance
from genimg.train import workdir as workdir_lib

FILE = "MODEL_CARD.md"

_INTENDED = (
    "Research and teaching: studying how generative models of images train and fail, "
    "comparing objectives and architectures, and reproducing published measurements on small "
    "data sets."
)
_OUT_OF_SCOPE = (
    "Producing images presented as real photographs or evidence; impersonating people; "
    "generating content about real people without consent; any use where a viewer is not "
    "told that an image is generated. The model was trained on the data below only and says "
    "nothing reliable about other domains."
)
_RISKS = (
    "Generated images can be mistaken for real ones and misused (fake evidence, "
    "misinformation). Samples reproduce the biases and gaps of the training data, and "
    "small-data models can memorise training images. The invisible watermark survives "
    "common processing (PNG/JPEG re-encoding, mild resizing and cropping, noise) but not "
    "deliberate removal, and images smaller than "
    f"{wm.MIN_SIDE}x{wm.MIN_SIDE} pixels carry the PNG text only."
)


def _table(rows: dict) -> str:
    """A two-column markdown table ("" for no rows)."""
    if not rows:
        return ""
    lines = ["| key | value |", "|---|---|"]
    for key, value in rows.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


def _last_metrics(workdir: pathlib.Path) -> dict:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return {}
    for line in reversed(path.read_text().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of an interrupted run
    return {}


def render(workdir, config: dict, run_info: dict, num_params: int | None = None) -> str:
    """The card's markdown for the run in ``workdir`` (``config`` as written in config.json)."""
    workdir = pathlib.Path(workdir)
    evaluation = workdir / "eval.json"
    results = json.loads(evaluation.read_text()) if evaluation.is_file() else {}
    provenance = run_info.get("provenance", {})
    marked = provenance.get("watermark", False)
    details = {
        "family": config.get("family"),
        "run id": run_info.get("run_id", "?"),
        "config hash": run_info.get("config_hash", "?"),
        "parameters": num_params if num_params is not None else "?",
        "image shape": run_info.get("image_shape"),
        "classes": run_info.get("num_classes"),
        "training steps (configured)": config.get("train", {}).get("steps"),
        "written": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    model = config.get("model", {})
    sections = [
        f"# Model card: {workdir.name}",
        "Written by genimg for the run in this folder; it is rewritten when the run starts, "
        "resumes, ends or is evaluated (edits by hand do not last).",
        "## Model details",
        _table(details),
        "Model configuration (`config.json` has everything):",
        _table({f"model.{k}": v for k, v in model.items()}),
        "## Intended use",
        _INTENDED,
        "## Out-of-scope uses",
        _OUT_OF_SCOPE,
        "## Training data",
        f"{run_info.get('data', config.get('data', {}).get('source', '?'))}; "
        f"split `{config.get('data', {}).get('split', '?')}`.",
        "## Evaluation results",
        _table(results)
        if results
        else "Not evaluated yet: `python -m genimg.evaluate "
        f"--workdir={workdir}` fills this section.",
        "Last logged training metrics:",
        _table(_last_metrics(workdir)) or "none yet",
        "## Risks and limitations",
        _RISKS,
        "## Provenance watermark",
        (
            f"Every image this run writes carries PNG text (`genimg:*`) and an invisible 48-bit "
            f"watermark under key id `{provenance.get('key_id')}` (payload: run id and model "
            "hash). Verify a file with `python -m genimg.provenance check FILE` (with "
            "`$GENIMG_WATERMARK_KEY` set when the key is secret)."
            if marked
            else "**The invisible watermark is OFF for this run** (`provenance.watermark=False` "
            "was set explicitly). Its images carry the PNG text only, which is easy to strip."
        ),
    ]
    signature = run_info.get("stable_signature")
    if signature:
        sections += [
            "### Stable Signature",
            f"This generator was fine-tuned from the run `{signature.get('base')}` (run id "
            f"`{signature.get('base_run_id')}`) so that every image it draws carries the mark "
            f"of key id `{signature.get('key_id')}` with model hash "
            f"`{signature.get('model_hash')}`, also when the model is called directly and its "
            "output never passes through genimg's file writer. Check an image with "
            "`python -m genimg.provenance check FILE --decoder=<this run>` (the decoder is "
            f"`{signature.get('decoder', 'watermark_decoder.npz')}` in this folder). Measured at "
            "the end of the fine-tuning:",
            _table(signature.get("measured", {})) or "nothing measured",
        ]
    return "\n\n".join(sections) + "\n"


def write(workdir, config: dict, run_info: dict, num_params: int | None = None) -> pathlib.Path:
    """Write ``MODEL_CARD.md`` atomically; returns its path."""
    path = pathlib.Path(workdir) / FILE
    workdir_lib.atomic_write_text(path, render(workdir, config, run_info, num_params))
    return path


def refresh(workdir, state=None) -> pathlib.Path:
    """Rewrite the card of the run in ``workdir`` from its files (``config.json``,
    ``run_info.json``, ``eval.json``, ``metrics.jsonl``); ``state`` gives the parameter count."""
    record, info = run_provenance.read_run(workdir)
    num_params = None if state is None else run_provenance.count_params(state)
    return write(workdir, record, info, num_params)
