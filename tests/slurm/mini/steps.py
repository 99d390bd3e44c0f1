"""A stand-in for a training job: N deterministic steps, checkpointed after each one.

    python steps.py SEED STEPS DELAY CKPT OUT

Resumes from CKPT when it exists, so a job cancelled mid-run and started again writes the
same OUT as an undisturbed run. Prints the SLURM job id and the resume point (to the rule's
log), which is what the tests read to prove a job went through SLURM and resumed.
"""

import json
import os
import sys
import time


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main() -> None:
    seed, steps, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    ckpt, out = sys.argv[4], sys.argv[5]
    os.makedirs(os.path.dirname(ckpt) or ".", exist_ok=True)
    state = {"step": 0, "value": seed}
    if os.path.exists(ckpt):
        with open(ckpt) as fh:
            state = json.load(fh)
    print(f"SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', 'none')} resume_step={state['step']}", flush=True)
    while state["step"] < steps:
        time.sleep(delay)
        state = {"step": state["step"] + 1, "value": (state["value"] * 31 + 7) % 1_000_003}
        write_atomic(ckpt, json.dumps(state))
        print(f"step={state['step']}", flush=True)
    write_atomic(out, f"{state['value']}\n")


if __name__ == "__main__":
    main()
