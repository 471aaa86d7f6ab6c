"""Run an experiment's command line with one fault armed: the process kills itself (SIGKILL)
the N-th time it reaches a chosen point, leaving behind what a real kill -9 there would.

    python -m tests.crash_driver POINT N experiments.dcgan --workdir=W --config=...

POINT (N counts from this process's start):
  step          after the N-th train step is dispatched
  metrics_line  half-way through writing the N-th line of metrics.jsonl (a torn line)
  tb_event      half-way through writing the N-th TensorBoard event (a torn record)
  png           half-way through writing the N-th PNG (a sample grid), before its rename
  run_file      half-way through the N-th atomic rewrite of a run file (config.json, ...)
  ckpt_write    right after the N-th checkpoint save starts (Orbax is writing its arrays)
  ckpt_commit   at Orbax's N-th rename of a finished checkpoint into place (data on disk)
  ckpt_delete   half-way through Orbax's N-th deletion of an old checkpoint
  restore       as the N-th checkpoint restore starts
  none          no fault
Besides faults, ``GENIMG_TEST_STEP_DELAY=s`` sleeps s seconds after every step and
``GENIMG_TEST_COMMIT_DELAY=s`` before Orbax renames a written checkpoint into place (so that a
test can signal a run in the middle of a save).

Before it dies, the driver appends ``POINT N`` to ``$GENIMG_TEST_KILL_LOG`` (if set), so a
test can check that the fault it armed is the one that fired. tensorboardX imports torch only
to accept torch tensors; torch is blocked here, which saves ~2 s per launch.
"""

import io
import json
import os
import pathlib
import runpy
import signal
import sys
import threading
import time

POINTS = (
    "step",
    "metrics_line",
    "tb_event",
    "png",
    "run_file",
    "ckpt_write",
    "ckpt_commit",
    "ckpt_delete",
    "restore",
    "none",
)


class Fault:
    def __init__(self, point: str, n: int):
        if point not in POINTS:
            raise SystemExit(f"unknown point {point}; expected one of {POINTS}")
        self.point, self.n, self.count = point, n, 0
        self.lock = threading.Lock()

    def reached(self, point: str) -> bool:
        """Count a visit of ``point``; True when it is the armed one's N-th."""
        if point != self.point:
            return False
        with self.lock:
            self.count += 1
            return self.count == self.n

    def kill(self) -> None:
        log = os.environ.get("GENIMG_TEST_KILL_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{self.point} {self.n}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def install(fault: Fault) -> None:
    import PIL.Image
    from orbax.checkpoint._src.path import async_path, deleter

    from genimg.train import checkpoint as ckpt
    from genimg.train import loop
    from genimg.train import workdir as workdir_lib

    step_delay = float(os.environ.get("GENIMG_TEST_STEP_DELAY", "0"))
    commit_delay = float(os.environ.get("GENIMG_TEST_COMMIT_DELAY", "0"))

    compile_step = loop.compile_step

    def compile_with_fault(*args, **kwargs):
        step_fn = compile_step(*args, **kwargs)

        def step(*a, **k):
            out = step_fn(*a, **k)
            if fault.reached("step"):
                fault.kill()
            if step_delay:
                time.sleep(step_delay)
            return out

        return step

    loop.compile_step = compile_with_fault

    scalars = loop._Writers.scalars

    def scalars_with_fault(self, step, metrics):
        if fault.reached("metrics_line"):
            line = json.dumps({"step": step, **metrics}) + "\n"
            self.jsonl.write(line[: len(line) // 2])
            self.jsonl.flush()
            fault.kill()
        return scalars(self, step, metrics)

    loop._Writers.scalars = scalars_with_fault

    write_event = loop._TensorBoard._write

    def write_event_with_fault(self, event):
        if fault.reached("tb_event"):
            record = event.SerializeToString()
            self._writer.flush()
            with open(self._writer._file_name, "ab") as f:
                f.write(len(record).to_bytes(8, "little") + record[: len(record) // 2])
            fault.kill()
        return write_event(self, event)

    loop._TensorBoard._write = write_event_with_fault

    save_image = PIL.Image.Image.save

    def save_image_with_fault(self, fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)) and fault.reached("png"):  # not into a buffer
            buffer = io.BytesIO()
            save_image(self, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(fp, "wb") as f:
                f.write(data[: len(data) // 2])
            fault.kill()
        return save_image(self, fp, *args, **kwargs)

    PIL.Image.Image.save = save_image_with_fault

    atomic_write_text = workdir_lib.atomic_write_text

    def atomic_write_with_fault(path, text):
        if fault.reached("run_file"):
            path = pathlib.Path(path)
            tmp = path.with_name(f".{path.name}.killed.tmp")
            tmp.write_text(text[: len(text) // 2])
            fault.kill()
        return atomic_write_text(path, text)

    workdir_lib.atomic_write_text = atomic_write_with_fault

    save = ckpt.save

    def save_with_fault(manager, step, state):
        save(manager, step, state)
        if fault.reached("ckpt_write"):
            fault.kill()

    ckpt.save = save_with_fault

    rename = async_path.rename

    async def rename_with_fault(src, dst):
        if fault.reached("ckpt_commit"):
            fault.kill()
        if commit_delay:
            time.sleep(commit_delay)  # blocks Orbax's finalize thread, as a slow disk would
        return await rename(src, dst)

    async_path.rename = rename_with_fault

    delete = deleter.StandardCheckpointDeleter._delete_step_permanently

    def delete_with_fault(self, step, target):
        if fault.reached("ckpt_delete"):
            files = sorted(p for p in pathlib.Path(target).rglob("*") if p.is_file())
            for p in files[: len(files) // 2]:
                p.unlink()
            fault.kill()
        return delete(self, step, target)

    deleter.StandardCheckpointDeleter._delete_step_permanently = delete_with_fault

    restore = ckpt.restore

    def restore_with_fault(manager, abstract_state, step=None):
        if fault.reached("restore"):  # reading changes nothing: dying as it starts is the same
            fault.kill()
        return restore(manager, abstract_state, step)

    ckpt.restore = restore_with_fault


def main() -> None:
    sys.modules["torch"] = None  # ImportError for `import torch`: tensorboardX then skips it
    point, n, module, *args = sys.argv[1:]
    install(Fault(point, int(n)))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
